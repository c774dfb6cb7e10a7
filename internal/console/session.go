// Who may use the console: a login token traded for a session cookie,
// and per-session CSRF tokens on every action.

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

// randomHex is n random bytes in hex (tokens, sessions).
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// login trades the token for a session cookie and goes to the overview.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.Token)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, "login", c.base(r, ""), nil)
		return
	}
	id := randomHex(32)
	now := c.cfg.Now()
	c.mu.Lock()
	for s, exp := range c.sessions {
		if now.After(exp) {
			delete(c.sessions, s)
		}
	}
	c.sessions[id] = now.Add(sessionTTL)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// auth lets through requests with a live session cookie.
func (c *Console) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(cookieName)
		ok := false
		if err == nil {
			c.mu.Lock()
			exp, found := c.sessions[ck.Value]
			ok = found && c.cfg.Now().Before(exp)
			c.mu.Unlock()
		}
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			c.render(w, "login", c.base(r, ""), nil)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ck.Value)))
	}
}

// csrf is the form token of a session: an HMAC over the session and the
// operator's certificate, so it is worthless elsewhere.
func (c *Console) csrf(session string) string {
	m := hmac.New(sha256.New, c.key)
	fmt.Fprintf(m, "csrf\x00%s\x00%s", session, c.certID)
	return hex.EncodeToString(m.Sum(nil))
}
