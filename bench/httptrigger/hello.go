package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/trinehq/trine/engine"
)

const (
	// fnHello is the function the http trigger calls.
	fnHello = "bench::hello"
	// helloPath is the route's path, without the id.
	helloPath = "/hello/"
	// routeConfig is the http trigger's config for bench::hello.
	routeConfig = `{"api_path":"hello/:id","http_method":"GET"}`
)

// helloBody is what both servers answer to GET /hello/<id>.
type helloBody struct {
	Hello int `json:"hello"`
}

// hello is bench::hello: it reads the id from the payload's path_params
// and returns a 200 response whose body is {"hello":<id>}.
func hello(_ context.Context, c engine.Call) ([]byte, error) {
	var req struct {
		PathParams map[string]string `json:"path_params"`
	}
	if err := json.Unmarshal(c.Payload, &req); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	id, err := strconv.Atoi(req.PathParams["id"])
	if err != nil {
		return nil, fmt.Errorf("path parameter id: %w", err)
	}
	return json.Marshal(struct {
		StatusCode int       `json:"status_code"`
		Body       helloBody `json:"body"`
	}{200, helloBody{id}})
}

// wantBody is the body expected for id, byte for byte.
func wantBody(id int) []byte {
	b := append([]byte(`{"hello":`), strconv.Itoa(id)...)
	return append(b, '}')
}
