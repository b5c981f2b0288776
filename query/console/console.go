// Package console serves the SRE console at /ui/: static pages embedded in
// the binary that draw the KPI API's answers as charts and tables and
// verify a record's proof bundle in the browser. The pages hold no data;
// what they show comes from the API with the query token the user signs
// in with, so the console needs no session or state of its own.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// csp allows the page its own scripts, styles and API calls and nothing
// else: no inline script, no third-party origin, no framing. Records'
// strings reach the page as data only, and a script injected through one
// would not run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the console's assets under Prefix.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Assets change with the binary: revalidate rather than run an
		// old script against a new API.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
