package ledger

import (
	"net/http"
	"strings"
)

// Limits on a tile path: the longest tlog-tiles path is about 60
// characters, each segment at most 7 ("entries", "000.p").
const (
	maxTilePath    = 256
	maxTileSegment = 16
)

// TilesHandler serves the log's public resources under the C2SP tlog-tiles
// paths (/checkpoint, /tile/..., /tile/entries/...) straight from the
// storage directory, exactly as a static server or CDN would at scale.
// Nothing else in the directory (locks, tree state) is reachable.
func (l *Log) TilesHandler() http.Handler {
	fs := http.FileServer(http.Dir(l.TilesDir()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		// No tlog-tiles path comes near these lengths; a longer one is
		// answered before the file system is asked (which fails a name
		// over NAME_MAX with an error served as a 500).
		if len(p) > maxTilePath {
			http.Error(w, "path too long", http.StatusRequestURITooLong)
			return
		}
		for seg := range strings.SplitSeq(p, "/") {
			if len(seg) > maxTileSegment {
				http.NotFound(w, r)
				return
			}
		}
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
