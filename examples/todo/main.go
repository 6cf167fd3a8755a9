// Command todo is Trine's quick start in a browser: a worker and a live
// page, in one process.
//
// The worker serves todos::add, which writes a todo with stream::set (to
// stream "todos", group "inbox") and returns its result, seq included, so
// that the page's optimistic write is confirmed by the change it made; and
// a stream trigger on that group, todos::on-change, which counts the
// todos added and removed into the item "inbox" of the group "stats". The page, served on
// a loopback port, shows the group live with @trine/client, bundled from
// clients/js/src when the program starts.
//
// With an engine running (make run), from the repository root:
//
//	go run ./examples/todo
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/evanw/esbuild/pkg/api"

	trine "github.com/trinehq/trine/worker-sdk"
)

//go:embed static
var static embed.FS

const (
	streamName = "todos"
	groupID    = "inbox"
)

// Todo is one item of the group.
type Todo struct {
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

// Stats is the item the stream trigger keeps.
type Stats struct {
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
}

func main() {
	engine := flag.String("engine", "127.0.0.1:49134", "the engine's gRPC address, for the worker")
	streamURL := flag.String("stream", "http://127.0.0.1:3112", "the engine's stream listener (--stream-addr), for the page")
	iiiURL := flag.String("iii", "ws://127.0.0.1:49135", "an iii listener the page calls todos::add through (--iii-addr)")
	addr := flag.String("addr", "127.0.0.1:8080", "where to serve the page (a loopback address: the engine allows loopback pages by default)")
	client := flag.String("client", "", "the @trine/client sources (clients/js/src); default: found from the working directory or this file")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *engine, *streamURL, *iiiURL, *addr, *client); err != nil {
		log.Fatal("todo: ", err)
	}
}

func run(ctx context.Context, engine, streamURL, iiiURL, addr, clientSrc string) error {
	bundle, err := bundleClient(clientSrc)
	if err != nil {
		return err
	}
	w, err := trine.NewWorker(engine, trine.WithName("todo"))
	if err != nil {
		return err
	}
	defer w.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Connect(cctx); err != nil {
		return fmt.Errorf("connecting to the engine at %s (is it running? make run): %w", engine, err)
	}
	if err := register(cctx, w); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: pages(bundle, streamURL, iiiURL), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("todo: open http://%s/\n", lis.Addr())
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// register serves todos::add and todos::on-change, and binds the latter to
// every change of the group with a stream trigger.
func register(ctx context.Context, w *trine.Worker) error {
	err := w.RegisterFunction(ctx, "todos::add", func(ctx context.Context, in json.RawMessage) (any, error) {
		var p struct {
			ID    string `json:"id"`
			Title string `json:"title"`
			Done  bool   `json:"done"`
		}
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, &trine.Error{Code: trine.CodeInvalidArgument, Message: err.Error()}
		}
		p.Title = strings.TrimSpace(p.Title)
		if p.ID == "" || p.Title == "" {
			return nil, &trine.Error{Code: trine.CodeInvalidArgument, Message: "id and title are required"}
		}
		// stream::set answers {old_value, new_value, seq}: the page's
		// optimistic write stays pending until the change with that seq.
		return w.Trigger(ctx, "stream::set", map[string]any{
			"stream_name": streamName, "group_id": groupID, "item_id": p.ID,
			"data": Todo{Title: p.Title, Done: p.Done},
		})
	}, trine.WithDescription("adds or replaces the todo {id, title, done} in todos/inbox"))
	if err != nil {
		return err
	}
	stats := trine.NewStream[Stats](w, streamName)
	err = w.RegisterFunction(ctx, "todos::on-change", func(ctx context.Context, in json.RawMessage) (any, error) {
		// The payload is the frame browsers get: {seq, id, event: {type, data}, ...}.
		var f struct {
			Event struct {
				Type string `json:"type"`
			} `json:"event"`
		}
		if err := json.Unmarshal(in, &f); err != nil {
			return nil, err
		}
		var op trine.UpdateOp
		switch f.Event.Type {
		case "create":
			op = trine.OpIncrement("added", 1)
		case "delete":
			op = trine.OpIncrement("removed", 1)
		default:
			return nil, nil // an edit
		}
		_, err := stats.Update(ctx, "stats", groupID, []trine.UpdateOp{op})
		return nil, err
	}, trine.WithDescription("counts the todos added to and removed from todos/inbox into todos/stats/inbox"))
	if err != nil {
		return err
	}
	return w.RegisterTrigger(ctx, trine.Trigger{
		ID: "todos-on-change", Type: "stream", FunctionID: "todos::on-change",
		Config: map[string]string{"stream_name": streamName, "group_id": groupID},
	})
}

// pages serves the page, its config and the client bundle.
func pages(bundle []byte, streamURL, iiiURL string) http.Handler {
	root, _ := fs.Sub(static, "static")
	cfg, _ := json.Marshal(map[string]string{"stream": streamURL, "iii": iiiURL, "streamName": streamName, "group": groupID})
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(root))
	mux.HandleFunc("GET /config.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = fmt.Fprintf(w, "export default %s\n", cfg)
	})
	mux.HandleFunc("GET /trine-client.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write(bundle)
	})
	return mux
}

// bundleClient bundles @trine/client from its TypeScript sources with
// esbuild's Go API, as clients/js/scripts/build.mjs does with npm's: no
// Node needed to run the example.
func bundleClient(dir string) ([]byte, error) {
	if dir == "" {
		dir = findClient()
	}
	entry := filepath.Join(dir, "index.ts")
	if _, err := os.Stat(entry); err != nil {
		return nil, fmt.Errorf("no @trine/client sources at %s: run from the repository root, or pass -client clients/js/src", dir)
	}
	res := api.Build(api.BuildOptions{
		EntryPoints: []string{entry}, Bundle: true, Format: api.FormatESModule, Target: api.ES2020,
		MinifyWhitespace: true, MinifyIdentifiers: true, MinifySyntax: true, LegalComments: api.LegalCommentsNone,
	})
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return nil, fmt.Errorf("bundling %s:\n%s", entry, strings.Join(msgs, ""))
	}
	return res.OutputFiles[0].Contents, nil
}

// findClient looks for clients/js/src from the working directory up, then
// next to this file's directory in the checkout it was built from.
func findClient() string {
	const rel = "clients/js/src"
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, rel, "index.ts")); err == nil {
				return filepath.Join(d, rel)
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		return filepath.Join(filepath.Dir(file), "..", "..", rel)
	}
	return rel
}
