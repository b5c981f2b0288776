// Command confserver is a minimal MCP server on the official Go SDK,
// written for the MCP conformance suite's server scenarios (tools of each
// content type, logging, progress, sampling, elicitation, resources,
// templates, subscriptions, prompts, completion). It runs with proofline's
// hook (--hook, the default) or without, so that e2e/conformance_test.go
// can check that the hook changes no scenario's outcome.
//
//	confserver --http 127.0.0.1:8080 --nats nats://127.0.0.1:4222 --nats-token-file DATA/keys/nats.token
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/schemas"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "confserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("confserver", flag.ContinueOnError)
	addr := fs.String("http", "127.0.0.1:0", "streamable HTTP address")
	hooked := fs.Bool("hook", true, "put proofline's hook on the server")
	natsURL := fs.String("nats", "", "NATS URL of proofline's JetStream (with --hook)")
	tokenFile := fs.String("nats-token-file", "", "file holding the NATS token")
	spool := fs.String("spool", filepath.Join(os.TempDir(), fmt.Sprintf("confserver-spool-%d", os.Getpid())), "outbox spool file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := newServer()
	if *hooked {
		tok := ""
		if *tokenFile != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return err
			}
			tok = strings.TrimSpace(string(b))
		}
		nc, err := nats.Connect(*natsURL, nats.Token(tok), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(js), SpoolPath: *spool, Logger: logger})
		if err != nil {
			return err
		}
		defer func() { _ = ob.Close(context.Background()) }()
		hook, err := mcphook.New(mcphook.Config{
			Outbox: ob, Principal: "mcphook:confserver", Logger: logger, Transport: schemas.TransportHTTP,
			Server: mcphook.ServerInfo{Name: "confserver", Version: "1.0.0"},
			Limits: mcphook.Limits{DefaultTimeout: 30 * time.Second, DefaultMaxConcurrent: 8},
		})
		if err != nil {
			return err
		}
		defer func() { _ = hook.Close(context.Background()) }()
		srv.AddReceivingMiddleware(hook.ServerMiddleware())
	}
	hs := &http.Server{Addr: *addr, ReadHeaderTimeout: 10 * time.Second,
		Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	logger.Info("confserver on streamable HTTP", "addr", *addr, "hook", *hooked)
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// A 1x1 PNG and a silent WAV: the smallest valid files of their kind.
var (
	png, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
	wav, _ = base64.StdEncoding.DecodeString("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")
)

func result(c ...mcp.Content) *mcp.CallToolResult { return &mcp.CallToolResult{Content: c} }

func text(s string) *mcp.TextContent { return &mcp.TextContent{Text: s} }

func embedded(uri string) *mcp.EmbeddedResource {
	return &mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: uri, MIMEType: "text/plain", Text: "This is an embedded resource"}}
}

type none struct{}

func tool(srv *mcp.Server, name string, h func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error)) {
	mcp.AddTool(srv, &mcp.Tool{Name: name, Description: name}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		res, err := h(ctx, req)
		return res, nil, err
	})
}

func newServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "confserver", Version: "1.0.0"}, &mcp.ServerOptions{
		CompletionHandler: func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
		},
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	tool(srv, "test_simple_text", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return result(text("This is a simple text response for testing.")), nil
	})
	tool(srv, "test_image_content", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return result(&mcp.ImageContent{Data: png, MIMEType: "image/png"}), nil
	})
	tool(srv, "test_audio_content", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return result(&mcp.AudioContent{Data: wav, MIMEType: "audio/wav"}), nil
	})
	tool(srv, "test_embedded_resource", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return result(embedded("test://embedded-resource")), nil
	})
	tool(srv, "test_multiple_content_types", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return result(text("This is text content"), &mcp.ImageContent{Data: png, MIMEType: "image/png"}, embedded("test://embedded-in-multiple")), nil
	})
	tool(srv, "test_tool_with_logging", func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		for _, m := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: m})
		}
		return result(text("Tool with logging executed successfully")), nil
	})
	tool(srv, "test_tool_with_progress", func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tok := req.Params.GetProgressToken()
		for _, p := range []float64{0, 50, 100} {
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: p, Total: 100})
		}
		return result(text(fmt.Sprint(tok))), nil
	})
	tool(srv, "test_error_handling", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, errors.New("this tool intentionally returns an error for testing")
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "test_sampling", Description: "asks the client for an LLM completion"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		Prompt string `json:"prompt"`
	}) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 100,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: text(in.Prompt)}}})
		if err != nil {
			return nil, nil, fmt.Errorf("sampling failed: %w", err)
		}
		answer := "(non-text response)"
		if tc, ok := res.Content.(*mcp.TextContent); ok {
			answer = tc.Text
		}
		return result(text("LLM response: " + answer)), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "test_elicitation", Description: "asks the user for input"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		Message string `json:"message"`
	}) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: in.Message, RequestedSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"username": map[string]any{"type": "string", "description": "Your preferred username"}},
			"required":   []string{"username"},
		}})
		if err != nil {
			return nil, nil, fmt.Errorf("elicitation failed: %w", err)
		}
		return result(text(fmt.Sprintf("Elicitation result: action=%s, content=%v", res.Action, res.Content))), nil, nil
	})
	tool(srv, "test_elicitation_sep1034_defaults", func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		prop := func(typ, desc string, def any) map[string]any {
			return map[string]any{"type": typ, "description": desc, "default": def}
		}
		status := prop("string", "User status", "active")
		status["enum"] = []string{"active", "inactive", "pending"}
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Test defaults for primitives", RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"name": prop("string", "User name", "John Doe"), "age": prop("integer", "User age", 30),
				"score": prop("number", "User score", 95.5), "status": status, "verified": prop("boolean", "Verification status", true),
			},
		}})
		if err != nil {
			return nil, fmt.Errorf("elicitation failed: %w", err)
		}
		return result(text(fmt.Sprintf("Elicitation result: action=%s, content=%v", res.Action, res.Content))), nil
	})

	read := func(mime, body string, blob []byte) mcp.ResourceHandler {
		return func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: mime, Text: body, Blob: blob}}}, nil
		}
	}
	srv.AddResource(&mcp.Resource{Name: "static-text", URI: "test://static-text", MIMEType: "text/plain"},
		read("text/plain", "This is the content of the static text resource.", nil))
	srv.AddResource(&mcp.Resource{Name: "static-binary", URI: "test://static-binary", MIMEType: "image/png"}, read("image/png", "", png))
	srv.AddResource(&mcp.Resource{Name: "watched-resource", URI: "test://watched-resource", MIMEType: "text/plain"},
		read("text/plain", "Watched resource content", nil))
	srv.AddResourceTemplate(&mcp.ResourceTemplate{Name: "template", URITemplate: "test://template/{id}/data", MIMEType: "application/json"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			id := strings.TrimSuffix(strings.TrimPrefix(req.Params.URI, "test://template/"), "/data")
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "application/json",
				Text: fmt.Sprintf(`{"id": %q, "templateTest": true, "data": "Data for ID: %s"}`, id, id)}}}, nil
		})

	prompt := func(p *mcp.Prompt, msgs func(args map[string]string) []*mcp.PromptMessage) {
		srv.AddPrompt(p, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Description: p.Description, Messages: msgs(req.Params.Arguments)}, nil
		})
	}
	user := func(c mcp.Content) *mcp.PromptMessage { return &mcp.PromptMessage{Role: "user", Content: c} }
	prompt(&mcp.Prompt{Name: "test_simple_prompt", Description: "A simple prompt without arguments"}, func(map[string]string) []*mcp.PromptMessage {
		return []*mcp.PromptMessage{user(text("This is a simple prompt for testing."))}
	})
	prompt(&mcp.Prompt{Name: "test_prompt_with_arguments", Description: "A prompt with required arguments",
		Arguments: []*mcp.PromptArgument{{Name: "arg1", Required: true}, {Name: "arg2", Required: true}}}, func(a map[string]string) []*mcp.PromptMessage {
		return []*mcp.PromptMessage{user(text(fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", a["arg1"], a["arg2"])))}
	})
	prompt(&mcp.Prompt{Name: "test_prompt_with_embedded_resource", Description: "A prompt that includes an embedded resource",
		Arguments: []*mcp.PromptArgument{{Name: "resourceUri", Required: true}}}, func(a map[string]string) []*mcp.PromptMessage {
		return []*mcp.PromptMessage{
			user(&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: a["resourceUri"], MIMEType: "text/plain", Text: "Embedded resource content for testing."}}),
			user(text("Please process the embedded resource above.")),
		}
	})
	prompt(&mcp.Prompt{Name: "test_prompt_with_image", Description: "A prompt that includes image content"}, func(map[string]string) []*mcp.PromptMessage {
		return []*mcp.PromptMessage{user(&mcp.ImageContent{Data: png, MIMEType: "image/png"}), user(text("Please analyze the image above."))}
	})
	return srv
}
