package ledger

import (
	"net/http"
	"strings"
)

// TilesHandler serves the log's public resources under the C2SP tlog-tiles
// paths (/checkpoint, /tile/..., /tile/entries/...) straight from the
// storage directory, exactly as a static server or CDN would at scale.
// Nothing else in the directory (locks, tree state) is reachable.
func (l *Log) TilesHandler() http.Handler {
	fs := http.FileServer(http.Dir(l.TilesDir()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "/checkpoint" && !strings.HasPrefix(p, "/tile/") || strings.Contains(p, "..") || strings.HasSuffix(p, "/") {
			http.NotFound(w, r)
			return
		}
		if p == "/checkpoint" {
			// The checkpoint changes; tiles never do once written.
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		fs.ServeHTTP(w, r)
	})
}
