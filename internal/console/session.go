// Who may use the console: a login token (or, at the hub, a client
// certificate) traded for a session cookie bound to an operator, and
// per-session CSRF tokens on every action.

package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// session is one browser's login: who it acts as, until when.
type session struct {
	id      string
	op      *Operator
	expires time.Time
}

// randomHex is n random bytes in hex (tokens, sessions).
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// login trades the token for a session cookie and goes to the overview:
// the console's own token, or at the hub a one-time login link.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tok := q.Get("t")
	if tok == "" {
		tok = q.Get("token")
	}
	var op *Operator
	if c.cfg.Operators != nil {
		if len(tok) <= 128 {
			op, _ = c.cfg.Operators.Redeem(r.Context(), tok, r.RemoteAddr)
		}
	} else if subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.Token)) == 1 {
		op = c.self
	}
	if op == nil {
		// Which check failed is the hub's audit's business, not the
		// browser's.
		c.loginPage(w, r, "That login link is not valid: it is used, expired, or its certificate is no longer valid.")
		return
	}
	c.open(w, op)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// open starts a session for op and sets its cookie.
func (c *Console) open(w http.ResponseWriter, op *Operator) *session {
	now := c.cfg.Now()
	s := &session{id: randomHex(32), op: op, expires: now.Add(sessionTTL)}
	if !op.Expires.IsZero() && op.Expires.Before(s.expires) {
		s.expires = op.Expires
	}
	c.mu.Lock()
	for id, o := range c.sessions {
		if now.After(o.expires) {
			delete(c.sessions, id)
		}
	}
	c.sessions[s.id] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.expires.Sub(now) / time.Second)})
	return s
}

// valid reports whether s still stands: not expired, not ended, its
// operator still authenticated; a refused one ends.
func (c *Console) valid(ctx context.Context, s *session) error {
	c.mu.Lock()
	live := c.sessions[s.id] == s && c.cfg.Now().Before(s.expires)
	c.mu.Unlock()
	if !live {
		return fmt.Errorf("the session expired")
	}
	if s.op.Alive == nil {
		return nil
	}
	if err := s.op.Alive(ctx); err != nil {
		c.mu.Lock()
		delete(c.sessions, s.id)
		c.mu.Unlock()
		return fmt.Errorf("the session ended: %w", err)
	}
	return nil
}

// auth lets through requests of a live session. At the hub, a GET with a
// client certificate and no session opens one for the certificate; a
// POST never does (the CSRF token comes from a page of the session).
func (c *Console) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var s *session
		var why string
		if ck, err := r.Cookie(cookieName); err == nil {
			c.mu.Lock()
			s = c.sessions[ck.Value]
			c.mu.Unlock()
			if s != nil {
				if err := c.valid(r.Context(), s); err != nil {
					s, why = nil, err.Error()
				}
			}
		}
		if s == nil && c.cfg.Operators != nil && r.Method == http.MethodGet && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			op, err := c.cfg.Operators.Certificate(r.Context(), r.TLS.PeerCertificates[0], r.RemoteAddr)
			if err != nil {
				why = "your certificate was refused: " + clip(err.Error(), 500)
			} else {
				s = c.open(w, op)
			}
		}
		if s == nil {
			c.loginPage(w, r, why)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	}
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request, why string) {
	w.WriteHeader(http.StatusUnauthorized)
	p := c.base(r, "")
	p.Error = why
	c.render(w, "login", p, nil)
}

// csrf is the form token of a session: an HMAC over the session and its
// operator's certificate and role, so it is worthless elsewhere.
func (c *Console) csrf(s *session) string {
	m := hmac.New(sha256.New, c.key)
	fmt.Fprintf(m, "csrf\x00%s\x00%s", s.id, s.op.id)
	return hex.EncodeToString(m.Sum(nil))
}
