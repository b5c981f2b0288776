package estest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/proofline/proofline/exporters/ecssink/estest"
)

// The receiver must answer as Elasticsearch documents `_bulk`, or the
// sink's tests prove nothing. The steps run in order against one receiver.
func TestReceiverFollowsTheBulkContract(t *testing.T) {
	key := estest.EncodeAPIKey("id", "secret")
	es := estest.New(estest.Options{APIKey: key})
	defer es.Close()
	type item struct {
		Status int `json:"status"`
		Error  struct {
			Type string `json:"type"`
		} `json:"error"`
		Result string `json:"result"`
	}
	steps := []struct {
		name       string
		setup      func()
		path, auth string
		body       string
		status     int
		errType    string // whole-request error type
		errors     bool
		items      []int    // per-item statuses
		itemTypes  []string // per-item error types ("" for none)
	}{
		{name: "no credentials", path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}\n", status: 401, errType: "security_exception"},
		{name: "wrong API key", path: "/_bulk", auth: "ApiKey " + estest.EncodeAPIKey("id", "nope"), body: "{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}\n", status: 401, errType: "security_exception"},
		{name: "create two, filter_path ignored", path: "/_bulk?filter_path=items.*.status", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{\"a\":1}\n{\"create\":{\"_index\":\"i\",\"_id\":\"2\"}}\n{\"a\":2}\n",
			status: 200, items: []int{201, 201}, itemTypes: []string{"", ""}},
		{name: "create an existing id: 409 for that item only", path: "/i/_bulk", body: "{\"create\":{\"_id\":\"1\"}}\n{\"a\":1}\n{\"create\":{\"_id\":\"3\"}}\n{\"a\":3}\n",
			status: 200, errors: true, items: []int{409, 201}, itemTypes: []string{"version_conflict_engine_exception", ""}},
		{name: "a source that is not an object", path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"4\"}}\n[1]\n",
			status: 200, errors: true, items: []int{400}, itemTypes: []string{"mapper_parsing_exception"}},
		{name: "a poisoned document", setup: func() { es.Poison("5") }, path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"5\"}}\n{}\n",
			status: 200, errors: true, items: []int{400}, itemTypes: []string{"mapper_parsing_exception"}},
		{name: "per-item 429", setup: func() { es.ThrottleItems(1) }, path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"6\"}}\n{}\n{\"create\":{\"_index\":\"i\",\"_id\":\"7\"}}\n{}\n",
			status: 200, errors: true, items: []int{429, 201}, itemTypes: []string{"es_rejected_execution_exception", ""}},
		{name: "whole-request 429", setup: func() { es.Fail(429) }, path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"8\"}}\n{}\n", status: 429, errType: "es_rejected_execution_exception"},
		{name: "whole-request 503", setup: func() { es.Fail(503) }, path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"8\"}}\n{}\n", status: 503, errType: "cluster_block_exception"},
		{name: "no final newline", path: "/_bulk", body: "{\"create\":{\"_index\":\"i\",\"_id\":\"8\"}}\n{}", status: 400, errType: "illegal_argument_exception"},
		{name: "no index anywhere", path: "/_bulk", body: "{\"create\":{\"_id\":\"8\"}}\n{}\n", status: 400, errType: "action_request_validation_exception"},
		{name: "unknown action", path: "/_bulk", body: "{\"upsert\":{\"_index\":\"i\"}}\n{}\n", status: 400, errType: "illegal_argument_exception"},
		{name: "index overwrites, delete removes", path: "/_bulk", body: "{\"index\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{\"a\":9}\n{\"delete\":{\"_index\":\"i\",\"_id\":\"2\"}}\n",
			status: 200, items: []int{200, 200}, itemTypes: []string{"", ""}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.setup != nil {
				st.setup()
			}
			req, _ := http.NewRequest(http.MethodPost, es.URL+st.path, strings.NewReader(st.body))
			req.Header.Set("Content-Type", "application/x-ndjson")
			switch {
			case st.auth != "":
				req.Header.Set("Authorization", st.auth)
			case st.name != "no credentials":
				req.Header.Set("Authorization", "ApiKey "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != st.status || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" {
				t.Fatalf("HTTP %d (%s): %s", resp.StatusCode, resp.Header.Get("X-Elastic-Product"), raw)
			}
			var body struct {
				Error struct {
					Type string `json:"type"`
				} `json:"error"`
				Errors bool              `json:"errors"`
				Items  []map[string]item `json:"items"`
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatal(err)
			}
			if st.status != 200 {
				if body.Error.Type != st.errType {
					t.Fatalf("error type %q, want %q: %s", body.Error.Type, st.errType, raw)
				}
				if st.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
				return
			}
			if body.Errors != st.errors || len(body.Items) != len(st.items) {
				t.Fatalf("errors %v, %d items: %s", body.Errors, len(body.Items), raw)
			}
			for i, m := range body.Items {
				for _, it := range m {
					if it.Status != st.items[i] || it.Error.Type != st.itemTypes[i] {
						t.Fatalf("item %d: %d %q, want %d %q", i, it.Status, it.Error.Type, st.items[i], st.itemTypes[i])
					}
				}
			}
		})
	}
	docs := es.Docs("i")
	if string(docs["1"]) != `{"a":9}` || docs["2"] != nil || docs["3"] == nil || docs["7"] == nil || len(docs) != 3 {
		t.Fatalf("documents: %v", docs)
	}
}
