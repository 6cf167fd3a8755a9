// Package httptrigger provides the "http" trigger type: HTTP requests to
// registered routes call engine functions.
//
// It sits beside the StreamModule, on top of package engine (and of package
// channels, whose Hub can serve Config.Channels): New takes the
// *engine.Engine, Register adds the trigger type to it, and the Provider is an
// http.Handler that cmd/trine mounts on its HTTP listener. The engine owns
// triggers and their lifecycle; the Provider only keeps the route table.
//
// # Routes
//
// A trigger's config is a JSON object:
//
//	{"api_path": "users/:id", "http_method": "GET", "condition_function_id": "auth::check"}
//
// Its members:
//
//   - api_path (required) is a path of segments; a segment ":name" is a
//     parameter. One leading and one trailing slash are optional, so
//     "users/:id", "/users/:id" and "/users/:id/" are the same route; "/" is
//     the root. Literal segments may be percent-encoded and are compared
//     decoded. An empty segment ("a//b"), a parameter without a name (":"),
//     a repeated parameter name, "?", "#", control characters and invalid
//     UTF-8 are refused.
//   - http_method (required) is one of GET, POST, PUT, PATCH, DELETE, HEAD
//     and OPTIONS, in any case. HEAD and OPTIONS are never answered on a
//     route's behalf: register them explicitly.
//   - condition_function_id (optional) is called first, with the same
//     payload; a JSON false result answers 422 CONDITION_NOT_MET without
//     calling the trigger's function. Any other result lets the call
//     proceed; a failure of the condition function is answered like a
//     failure of the function (see below).
//   - max_body_bytes (optional) is the route's body limit. Up to
//     Config.MaxBodyBytes the body is read whole with it; over that (up
//     to Config.MaxStreamBodyBytes, Channels required) the body streams:
//     the function is called at once with a null "body" and reads
//     request_body as the upload arrives.
//   - middleware_function_ids (optional, at most 16) are called in order
//     after the condition, each with MiddlewareInput (the request without
//     its body). {"action":"continue"} goes on to the next one and then the
//     function; {"action":"respond","response":{status_code, body,
//     headers}} answers the request without calling the function. Any
//     other result answers 502 INVALID_RESPONSE and a failure is answered
//     like a function's: the chain fails closed.
//
// A bad config is refused with invalid_argument. A route conflicts with
// another trigger's when both have the same method and the same segments,
// parameters being wildcards whatever their names ("lists/:listId/:userId"
// and "lists/:userId/:listId" conflict; "a/:x" and "a/b" do not). A
// conflicting route, or one equal to a path in Config.Reserved, is refused
// with conflict. Registering a trigger id again replaces its route.
//
// # Matching
//
// A request path is split into segments, each percent-decoded on its own
// (so "%2F" stays inside its segment); one leading and one trailing slash
// are ignored. Literal segments are tried before parameters, segment by
// segment, falling back to parameters when the literal branch has no route
// for the request. A path with an empty segment matches nothing.
//
// # Payload
//
// The function is called through engine.Trigger with this payload (see
// Request):
//
//	{"path": "/users/:id", "method": "GET",
//	 "headers": {"accept": "a, b", "host": "example.com"},
//	 "query_params": {"q": "x", "tag": ["a", "b"]},
//	 "path_params": {"id": "42"},
//	 "body": <JSON>,
//	 "trigger": {"type": "http", "path": "/users/:id", "method": "GET"},
//	 "request_body": {"channel_id": "…", "access_key": "…", "direction": "read"},
//	 "response": {"channel_id": "…", "access_key": "…", "direction": "write"}}
//
// Header names are lowercased and repeated values joined with ", ". A query
// parameter given once is a string, one repeated is an array of strings.
// The body is:
//
//   - null when the request has no body;
//   - the parsed JSON when Content-Type is absent, application/json or any
//     */*+json type; if it is not valid JSON the answer is 400 INVALID_JSON
//     and no function is called;
//   - a JSON string holding the body as text for any other Content-Type
//     (forms, text, ...), if it is valid UTF-8;
//   - otherwise (a binary body) null, the bytes being in request_body, when
//     Config.Channels is set; without it the answer is 415
//     UNSUPPORTED_MEDIA_TYPE.
//
// request_body and response are refs to data channels (package channels),
// present only when Config.Channels is set, and never in the condition
// function's payload. Whoever holds a ref opens its end as a WebSocket
// (GET /ws/channels/{channel_id}?key={access_key}&dir={direction}), which
// the iii SDKs do for any ref in a payload. request_body carries the raw
// request body, as sent, in binary frames of at most 64 KiB and then a
// normal close; it is there to be read or ignored. response is where the
// function may stream its response instead of returning it (see
// Streaming). Both channels are removed when the request ends.
//
// # Response
//
// The function returns an object (see Response):
//
//	{"status_code": 201, "headers": {"location": "/users/42", "set-cookie": ["a=1", "b=2"]}, "body": {"id": 42}}
//
// Its members:
//
//   - status_code defaults to 200 and must be an integer from 200 to 599
//     (1xx cannot be a final answer in net/http).
//   - headers values are strings or arrays of strings; names must be HTTP
//     tokens and values free of control characters. Content-Length,
//     Transfer-Encoding and Connection are computed by the server and
//     ignored.
//   - body: a JSON string is written as text, with Content-Type
//     "text/plain; charset=utf-8"; any other JSON value (object, array,
//     number, boolean) is written as JSON, with Content-Type
//     "application/json"; null or absent writes no body. A Content-Type
//     set by the function always wins. 204 and 304 answers have no body.
//
// Anything else is answered 502 INVALID_RESPONSE, except that with
// Config.Channels a null or absent result means the response is streamed.
//
// # Streaming
//
// With Config.Channels set, a function may instead write its response into
// its response channel, as iii's http() helper does: text messages
//
//	{"type": "set_status", "status_code": 201}
//	{"type": "set_headers", "headers": {"content-type": "text/plain"}}
//
// then binary frames of body bytes, then a close (the end of the stream; so
// is its connection ending). The function may return null before, while
// or after it streams; it runs while the channel is read, so it may stream
// any amount before returning. Which answer the client gets:
//
//   - A result other than null, returned before any frame arrived on the
//     channel, is the response, as without channels (the channel is then
//     closed: a writer still attached gets 1001).
//   - Otherwise the response is streamed. set_status (default 200) and
//     set_headers are validated as for a returned response (502
//     INVALID_RESPONSE for an invalid one); a later set_headers replaces
//     the names it gives. The status and headers are written at the first
//     binary frame, or at the end of the stream if there is none; every
//     binary frame is then written and flushed at once (HEAD, 204 and 304
//     answers drop them). Without a Content-Type, net/http guesses one
//     from the first bytes. Text messages of other types, and any after
//     the header, are ignored, and so is a result returned after a frame.
//     A stream ended without any frame leaves the answer to the result, if
//     the function returns one in time (see below).
//   - The function failing before anything was written is answered as
//     under Errors. The function or the channel failing after the header
//     was written cuts the response off: the connection is closed without
//     finishing it, so the client sees it truncated.
//   - A null result whose writer has not connected to the response
//     channel within two seconds of the result is answered 502
//     INVALID_RESPONSE ("returned null and streamed no response"): a
//     function that streams connects at once, and one that merely returned
//     null should not hold its client until the Timeout.
//   - A null result with no frame by Config.Timeout is answered 504
//     TIMEOUT ("returned no response and wrote none to its response
//     channel"), and so is a stream without its header by then; a stream
//     that has its header but has not ended by then is cut off.
//
// Once the stream has ended, a function still running has one second to
// return, so that its outcome counts; then its call is cancelled and the
// response finishes.
//
// # Errors
//
// Every error is answered with Content-Type application/json in the envelope
//
//	{"error": {"code": "NOT_FOUND", "message": "..."}}
//
// with "skipped": true added beside "error" for CONDITION_NOT_MET. Codes in
// capitals come from this package; a failure reported by a function keeps
// the function's own code (an engine code such as handler_error, or the
// code its worker chose).
//
//	status  code                    when
//	400     INVALID_JSON            a JSON body (see Payload) is not valid JSON
//	400     BAD_REQUEST             the body could not be read, or the payload breaks the function's
//	                                request_format (engine.ErrRequestFormat; the message names the pointer)
//	404     NOT_FOUND               no route matches the path
//	404     FUNCTION_NOT_FOUND      the function (or condition function) is not registered
//	405     METHOD_NOT_ALLOWED      routes match the path, none with this method; Allow lists theirs
//	408     REQUEST_TIMEOUT         the body did not arrive within Config.Timeout
//	413     PAYLOAD_TOO_LARGE       the body is larger than Config.MaxBodyBytes
//	415     UNSUPPORTED_MEDIA_TYPE  a non-JSON body is not valid UTF-8 (without Config.Channels)
//	422     CONDITION_NOT_MET       the condition function returned false ("skipped": true)
//	500     INTERNAL_ERROR          the payload could not be encoded (a bug)
//	502     the function's code     the function failed: handler_error, worker_disconnected, or any
//	                                code it returned ("internal" is answered with a generic message)
//	502     INVALID_RESPONSE        the function's result is not a valid response (see Response), or
//	                                its stream has an invalid set_status or set_headers (see Streaming)
//	503     UNAVAILABLE             the engine is shutting down, or the call was cancelled
//	                                (engine codes unavailable, cancelled), or the data channels
//	                                could not be opened or failed
//	503     OVERLOADED              the engine or worker is overloaded (engine code overloaded)
//	504     TIMEOUT                 the function did not answer within Config.Timeout (deadline_exceeded),
//	                                or, streaming, did not write the header of its response by then
//
// A request whose body is refused or not read to its end closes its HTTP/1
// connection after the answer.
//
// # Deadlines
//
// Config.Timeout starts when the request is handled and bounds receiving
// the body (through http.ResponseController read deadlines, when the
// ResponseWriter supports them), both function calls, whose context also
// ends when the client goes away, and reading and writing a streamed
// response (a write deadline from its header on). Handlers honour that
// context, as the engine requires, so no request outlives the Timeout by
// more than the time to write its answer; writing a returned response is
// bounded by the server's own WriteTimeout.
//
// # Concurrency
//
// A Provider is safe for concurrent use. Route changes are serialised and
// publish an immutable route table, which ServeHTTP reads without locking,
// so requests never wait for registrations. Without Config.Channels,
// ServeHTTP starts no goroutines; with it, the function's call runs on a
// goroutine of its own while ServeHTTP reads the response channel, and
// ServeHTTP returns only after the call has (its context is cancelled
// first if need be) and both channels are closed.
//
// Concurrency: a Provider is safe for concurrent use and serves each HTTP
// request on the net/http goroutine that carries it; a streamed request
// adds a body copier and a watcher that end before its handler returns. The
// package starts nothing that outlives a request.
package httptrigger
