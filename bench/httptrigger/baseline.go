package main

import (
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// baseline is the reference: a bare net/http handler on its own loopback
// server doing bench::hello's work (parse the id from the path, marshal the
// same body) with no engine in between.
type baseline struct {
	url    string
	hs     *http.Server
	served chan struct{} // hs.Serve returned
}

func startBaseline() (*baseline, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baseline{url: "http://" + lis.Addr().String(), served: make(chan struct{})}
	b.hs = &http.Server{Handler: http.HandlerFunc(serveHello), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(b.served)
		if err := b.hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("baseline server: %v", err)
		}
	}()
	return b, nil
}

func serveHello(w http.ResponseWriter, r *http.Request) {
	s, ok := strings.CutPrefix(r.URL.Path, helloPath)
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	id, err := strconv.Atoi(s)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	body, err := json.Marshal(helloBody{id})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// close stops the server and closes its connections.
func (b *baseline) close() {
	_ = b.hs.Close()
	<-b.served
}
