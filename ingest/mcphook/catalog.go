package mcphook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"sync"

	"github.com/gowebpki/jcs"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/proofline/proofline/schemas"
)

// MethodCatalog is the mcp.method of catalog records (schemas.MethodCatalog).
const MethodCatalog = schemas.MethodCatalog

// Catalog record attributes.
const (
	AttrCatalogChange       = "proofline.catalog" // registered, changed or removed
	AttrCatalogTitle        = "catalog.title"     // the tool's title
	AttrCatalogOwner        = "catalog.owner"     // ToolConfig.Owner
	AttrCatalogInputSchema  = "catalog.input_schema_sha256"
	AttrCatalogOutputSchema = "catalog.output_schema_sha256"
	AttrCatalogDescription  = "catalog.description_sha256"
	AttrCatalogAnnotations  = "catalog.annotations" // RFC 8785 JSON of the tool's annotations
)

// Catalog changes.
const (
	CatalogRegistered = "registered"
	CatalogChanged    = "changed"
	CatalogRemoved    = "removed"
)

// catalog remembers what this hook last recorded of each tool its server
// offers, to record a tool when it first appears in a tools/list answer
// and whenever it changes. It is per process: after a restart the hook
// records each tool again when it is first listed ("registered" with the
// same digests), which the span store's catalog reads as the same
// version, keeping the first time.
type catalog struct {
	mu    sync.Mutex
	known map[string]string // tool name → fingerprint
}

// catalogEntry is what a catalog record says of one tool.
type catalogEntry struct {
	name, title, version                   string
	inputSHA, outputSHA, descSHA, annotate string
}

type catalogChange struct {
	e      catalogEntry
	change string
}

func (e catalogEntry) fingerprint() string {
	sum := sha256.Sum256([]byte(e.title + "\x00" + e.version + "\x00" + e.inputSHA + "\x00" + e.outputSHA + "\x00" + e.descSHA + "\x00" + e.annotate))
	return hex.EncodeToString(sum[:])
}

// canonicalDigest is digest of v's JSON ("" for nil): the same schema
// digests alike however its server orders its keys.
func canonicalDigest(v any) string {
	if v == nil {
		return ""
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return digest(raw)
}

func (h *Hook) entryOf(t *mcp.Tool) catalogEntry {
	e := catalogEntry{name: t.Name, title: t.Title, version: h.cfg.Server.Version,
		inputSHA: canonicalDigest(t.InputSchema), outputSHA: canonicalDigest(t.OutputSchema)}
	if e.title == "" && t.Annotations != nil {
		e.title = t.Annotations.Title
	}
	// A tool may carry a version of its own in _meta.
	if v, ok := t.Meta["version"].(string); ok && v != "" {
		e.version = v
	}
	if t.Description != "" {
		sum := sha256.Sum256([]byte(t.Description))
		e.descSHA = hex.EncodeToString(sum[:])
	}
	if t.Annotations != nil {
		if raw, err := json.Marshal(t.Annotations); err == nil {
			if c, err := jcs.Transform(raw); err == nil && len(c) <= 4096 {
				e.annotate = string(c)
			}
		}
	}
	return e
}

// recordCatalog records the tools of a tools/list answer that are new or
// changed since this hook last recorded them; with the whole list (a
// first page without a next one), also those that are gone.
func (h *Hook) recordCatalog(ctx context.Context, res *mcp.ListToolsResult, firstPage bool) {
	if res == nil {
		return
	}
	whole := firstPage && res.NextCursor == ""
	var out []catalogChange
	h.cat.mu.Lock()
	listed := map[string]bool{}
	for _, t := range res.Tools {
		if t == nil || t.Name == "" {
			continue
		}
		listed[t.Name] = true
		e := h.entryOf(t)
		fp := e.fingerprint()
		prev, seen := h.cat.known[t.Name]
		switch {
		case !seen:
			out = append(out, catalogChange{e, CatalogRegistered})
		case prev != fp:
			out = append(out, catalogChange{e, CatalogChanged})
		default:
			continue
		}
		h.cat.known[t.Name] = fp
	}
	if whole {
		var gone []string
		for name := range h.cat.known {
			if !listed[name] {
				gone = append(gone, name)
			}
		}
		sort.Strings(gone)
		for _, name := range gone {
			delete(h.cat.known, name)
			out = append(out, catalogChange{catalogEntry{name: name, version: h.cfg.Server.Version}, CatalogRemoved})
		}
	}
	h.cat.mu.Unlock()
	for _, o := range out {
		h.seal(ctx, h.catalogRecord(o.e, o.change))
	}
}

func (h *Hook) catalogRecord(e catalogEntry, change string) pending {
	now := schemas.Timestamp{Time: h.now()}
	tc := h.cfg.Tools[e.name]
	attrs := map[string]string{AttrCatalogChange: change}
	for k, v := range map[string]string{AttrCatalogTitle: e.title, AttrCatalogOwner: tc.Owner, AttrCatalogInputSchema: e.inputSHA,
		AttrCatalogOutputSchema: e.outputSHA, AttrCatalogDescription: e.descSHA, AttrCatalogAnnotations: e.annotate} {
		if v != "" {
			attrs[k] = truncate(v, 4096)
		}
	}
	r := &schemas.CallRecord{
		TSStart: now, TSEnd: now,
		Actor:      schemas.Actor{ID: h.cfg.Principal, Type: schemas.ActorService},
		Tool:       schemas.Tool{Name: e.name, Server: h.cfg.Server.Name, Version: truncate(e.version, 128), Group: tc.Group},
		MCP:        &schemas.MCP{Method: MethodCatalog, Transport: h.cfg.Transport},
		Policy:     schemas.Policy{Decision: schemas.DecisionAllow},
		Outcome:    schemas.Outcome{Status: schemas.StatusOK},
		DataClass:  tc.DataClass,
		Region:     h.cfg.Region,
		Attributes: attrs,
		IngestedBy: h.cfg.Principal,
	}
	return pending{rec: r}
}
