package mcphook

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// history remembers the tools each session called, oldest first, for
// policies that look at what came before (session.tools): "no payment in
// a session that has read web content" is how an instruction injected
// into a page is kept from moving money. Bounded per session and in the
// number of sessions; idle sessions are forgotten after an hour.
type history struct {
	mu       sync.Mutex
	sessions *expirable.LRU[string, []string]
}

const (
	historyPerSession = 64
	historySessions   = 10_000
	historyIdle       = time.Hour
)

func newHistory() *history {
	return &history{sessions: expirable.NewLRU[string, []string](historySessions, nil, historyIdle)}
}

// historyKey is the session id; stdio sessions have none, and one process
// serves one client there, so they share one history.
func historyKey(session string) string {
	if session == "" {
		return "-"
	}
	return session
}

func (h *history) add(session, tool string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tools, _ := h.sessions.Get(historyKey(session))
	tools = append(tools, tool)
	if len(tools) > historyPerSession {
		tools = tools[len(tools)-historyPerSession:]
	}
	h.sessions.Add(historyKey(session), tools)
}

func (h *history) tools(session string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	tools, _ := h.sessions.Get(historyKey(session))
	return append([]string(nil), tools...)
}
