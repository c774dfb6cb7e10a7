// Package layout holds no code: its test enforces the import direction of
// DESIGN.md ("lower packages never import higher ones").
package layout
