package spanstore

import (
	"context"
	"fmt"
	"time"
)

// Catalog record attributes, as the MCP hook writes them
// (ingest/mcphook's AttrCatalog*; the span store does not import the
// producers).
const (
	attrCatalogChange       = "proofline.catalog"
	attrCatalogTitle        = "catalog.title"
	attrCatalogOwner        = "catalog.owner"
	attrCatalogInputSchema  = "catalog.input_schema_sha256"
	attrCatalogOutputSchema = "catalog.output_schema_sha256"
	attrCatalogDescription  = "catalog.description_sha256"
	attrCatalogAnnotations  = "catalog.annotations"
)

// writeCatalog inserts catalog records into the tool catalog. They are
// few (a server's tools when they change); a block ClickHouse refuses is
// retried one record at a time, so that one bad record is all it loses.
func (s *Store) writeCatalog(ctx context.Context, entries []Span) ([]Rejection, error) {
	err := s.insertCatalog(ctx, entries)
	if err == nil || !isRejected(err) {
		return nil, err
	}
	var rejected []Rejection
	for _, e := range entries {
		if err := s.insertCatalog(ctx, []Span{e}); err != nil {
			if !isRejected(err) {
				return nil, err
			}
			rejected = append(rejected, Rejection{Span: e, Err: err})
		}
	}
	return rejected, nil
}

func (s *Store) insertCatalog(ctx context.Context, entries []Span) error {
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.catalogTable)
	if err != nil {
		return fmt.Errorf("prepare catalog insert: %w", err)
	}
	for _, sp := range entries {
		r, a := sp.Record, sp.Record.Attributes
		if err := b.Append(r.Tool.Server, r.Tool.Name, r.TSStart.UTC(), a[attrCatalogChange], r.Tool.Version, r.Tool.Group,
			a[attrCatalogOwner], a[attrCatalogTitle], a[attrCatalogInputSchema], a[attrCatalogOutputSchema], a[attrCatalogDescription],
			a[attrCatalogAnnotations], r.RecordID, sp.LogOrigin, sp.LeafIndex); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append catalog record %s: %w: %w", r.RecordID, ErrRejected, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d catalog records: %w", len(entries), err)
	}
	return nil
}

// CatalogVersion is one version of a tool as its server offered it: from
// the catalog record that first showed it.
type CatalogVersion struct {
	Since              time.Time `json:"since"`
	Change             string    `json:"change"`
	Version            string    `json:"version"`
	Title              string    `json:"title,omitempty"`
	InputSchemaSHA256  string    `json:"input_schema_sha256,omitempty"`
	OutputSchemaSHA256 string    `json:"output_schema_sha256,omitempty"`
	DescriptionSHA256  string    `json:"description_sha256,omitempty"`
	Annotations        string    `json:"annotations,omitempty"`
	RecordID           string    `json:"record_id"`
	LogOrigin          string    `json:"log_origin"`
	LeafIndex          uint64    `json:"leaf_index"`
}

// CatalogTool is one tool of one server, with its history.
type CatalogTool struct {
	Server string `json:"server"`
	Name   string `json:"name"`
	Group  string `json:"group"`
	Owner  string `json:"owner"`
	// Registered is when the tool first appeared in its server's list.
	Registered time.Time `json:"registered"`
	// Removed is set while the tool is gone from its server's list.
	Removed bool `json:"removed"`
	// Current is the version offered now (the last one).
	Current CatalogVersion `json:"current"`
	// Versions are the versions in order; a listing after a producer's
	// restart that shows nothing new is not a version.
	Versions []CatalogVersion `json:"versions"`
	// SchemaDrift is set when the input schema changed from one version
	// to the next while the version string did not: agents were offered
	// other parameters under the same version.
	SchemaDrift bool `json:"schema_drift"`
}

// Catalog lists every tool any server offered, by server and name.
func (s *Store) Catalog(ctx context.Context) ([]CatalogTool, error) {
	rows, err := s.query(ctx, `SELECT tool_server, tool_name, ts, change, tool_version, tool_group, owner, title,
		input_schema_sha256, output_schema_sha256, description_sha256, annotations, record_id, log_origin, leaf_index
		FROM {{catalog}} FINAL ORDER BY tool_server, tool_name, ts, record_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog query: %w", err)
	}
	defer rows.Close()
	out := []CatalogTool{}
	var cur *CatalogTool
	for rows.Next() {
		var server, name, group, owner string
		var v CatalogVersion
		if err := rows.Scan(&server, &name, &v.Since, &v.Change, &v.Version, &group, &owner, &v.Title, &v.InputSchemaSHA256,
			&v.OutputSchemaSHA256, &v.DescriptionSHA256, &v.Annotations, &v.RecordID, &v.LogOrigin, &v.LeafIndex); err != nil {
			return nil, err
		}
		if cur == nil || cur.Server != server || cur.Name != name {
			out = append(out, CatalogTool{Server: server, Name: name, Registered: v.Since})
			cur = &out[len(out)-1]
		}
		if group != "" {
			cur.Group = group
		}
		if owner != "" {
			cur.Owner = owner
		}
		cur.Removed = v.Change == "removed"
		if cur.Removed {
			cur.Versions = append(cur.Versions, v)
			continue
		}
		if n := len(cur.Versions); n > 0 {
			prev := cur.Versions[n-1]
			if prev.Change != "removed" && sameOffer(prev, v) {
				continue // listed again (a producer restarted): the same version
			}
			if prev.Change != "removed" && prev.Version == v.Version && prev.InputSchemaSHA256 != v.InputSchemaSHA256 {
				cur.SchemaDrift = true
			}
		}
		cur.Versions = append(cur.Versions, v)
		cur.Current = v
	}
	return out, rows.Err()
}

func sameOffer(a, b CatalogVersion) bool {
	return a.Version == b.Version && a.Title == b.Title && a.InputSchemaSHA256 == b.InputSchemaSHA256 &&
		a.OutputSchemaSHA256 == b.OutputSchemaSHA256 && a.DescriptionSHA256 == b.DescriptionSHA256 && a.Annotations == b.Annotations
}
