package iiiserver

import (
	"bytes"
	"encoding/json"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// Message types of the iii worker protocol: the envelope's "type", the
// variant name in lowercase.
const (
	typeRegisterFunction          = "registerfunction"
	typeUnregisterFunction        = "unregisterfunction"
	typeRegisterTriggerType       = "registertriggertype"
	typeUnregisterTriggerType     = "unregistertriggertype" // sent by iii-sdk for Node
	typeRegisterTrigger           = "registertrigger"
	typeUnregisterTrigger         = "unregistertrigger"
	typeTriggerRegistrationResult = "triggerregistrationresult"
	typeRegisterService           = "registerservice"
	typeInvokeFunction            = "invokefunction"
	typeInvocationResult          = "invocationresult"
	typePing                      = "ping"
	typePong                      = "pong"
	typeWorkerRegistered          = "workerregistered"
	typeReattach                  = "reattach"
	typeRegistrationRejected      = "registrationrejected"
)

// inbound is any message a worker sends: the union of every type's fields.
// Pointers tell absent (and null) from empty where the protocol cares.
type inbound struct {
	Type string `json:"type"`

	ID             string          `json:"id"`
	Description    string          `json:"description"`
	FunctionID     string          `json:"function_id"`
	TriggerType    string          `json:"trigger_type"`
	Config         json.RawMessage `json:"config"`
	Namespace      *string         `json:"namespace"`
	RequestFormat  json.RawMessage `json:"request_format"`
	ResponseFormat json.RawMessage `json:"response_format"`
	// Validate false (a Trine extension of registerfunction) keeps the
	// formats for engine::functions::info only.
	Validate *bool `json:"validate"`
	// Invocation asks the engine to call the function over HTTP itself.
	Invocation json.RawMessage `json:"invocation"`

	InvocationID *string         `json:"invocation_id"`
	Data         json.RawMessage `json:"data"`
	Result       json.RawMessage `json:"result"`
	Error        *errorBody      `json:"error"`
	Action       *action         `json:"action"`
	Metadata     json.RawMessage `json:"metadata"`
	Traceparent  string          `json:"traceparent"`
	Baggage      string          `json:"baggage"`

	PreviousWorkerID string `json:"previous_worker_id"`
	ReattachToken    string `json:"reattach_token"`
}

// envelope is the part of a message read when the whole fails to decode,
// to answer it if it can be answered.
type envelope struct {
	Type         string `json:"type"`
	ID           any    `json:"id"`
	InvocationID any    `json:"invocation_id"`
	FunctionID   any    `json:"function_id"`
	TriggerType  any    `json:"trigger_type"`
}

type action struct {
	Type  string `json:"type"`
	Queue string `json:"queue,omitempty"`
}

// errorBody is iii's ErrorBody.
type errorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Stacktrace string `json:"stacktrace,omitempty"`
}

func toBody(err error) *errorBody {
	e := engine.AsError(err)
	if e == nil {
		return nil
	}
	return &errorBody{Code: toIII(e.Code), Message: e.Message, Stacktrace: e.Stacktrace}
}

func (b *errorBody) toError() *engine.Error {
	if b == nil {
		return nil
	}
	code := fromIII(b.Code)
	if code == "" {
		code = codes.HandlerError
	}
	return &engine.Error{Code: code, Message: b.Message, Stacktrace: b.Stacktrace}
}

// Outbound messages. Optional fields are omitted when unset, as iii does.

type workerRegistered struct {
	Type          string `json:"type"`
	WorkerID      string `json:"worker_id"`
	ReattachToken string `json:"reattach_token,omitempty"`
}

type invokeFunction struct {
	Type         string          `json:"type"`
	InvocationID string          `json:"invocation_id"`
	FunctionID   string          `json:"function_id"`
	Data         json.RawMessage `json:"data"`
	Traceparent  string          `json:"traceparent,omitempty"`
	Baggage      string          `json:"baggage,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

type invocationResult struct {
	Type         string          `json:"type"`
	InvocationID string          `json:"invocation_id"`
	FunctionID   string          `json:"function_id"`
	Result       json.RawMessage `json:"result,omitempty"`
	Error        *errorBody      `json:"error,omitempty"`
}

type registerTrigger struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	TriggerType string          `json:"trigger_type"`
	FunctionID  string          `json:"function_id"`
	Config      json.RawMessage `json:"config"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

type unregisterTrigger struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	TriggerType string `json:"trigger_type"`
}

type triggerRegistrationResult struct {
	Type        string     `json:"type"`
	ID          string     `json:"id"`
	TriggerType string     `json:"trigger_type"`
	FunctionID  string     `json:"function_id"`
	Error       *errorBody `json:"error,omitempty"`
}

type registrationRejected struct {
	Type          string `json:"type"`
	Code          string `json:"code"`
	Namespace     string `json:"namespace"`
	FunctionID    string `json:"function_id,omitempty"`
	OwnerWorkerID string `json:"owner_worker_id"`
	// Message is Trine's addition: why, in words.
	Message string `json:"message,omitempty"`
}

type bare struct {
	Type string `json:"type"`
}

// nonNull is raw JSON, or nil when it is empty or null.
func nonNull(b json.RawMessage) json.RawMessage {
	if string(b) == "null" {
		return nil
	}
	return b
}

// isNull reports whether b is empty or the JSON null.
func isNull(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || string(b) == "null"
}

// orNull is raw JSON, or null when empty.
func orNull(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// The messages of a call, invokefunction and invocationresult, are
// encoded by hand: byte for byte what json.Marshal makes of them, without
// its reflection, and with the raw JSON they carry (already checked by the
// engine) copied instead of validated and compacted again.

// size is about m's encoded size.
func (m *invokeFunction) size() int {
	return 96 + len(m.InvocationID) + len(m.FunctionID) + len(m.Data) + len(m.Traceparent) + len(m.Baggage) + len(m.Metadata)
}

// appendJSON appends m as json.Marshal encodes it.
func (m *invokeFunction) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = appendCallHead(b, m.Type, m.InvocationID, m.FunctionID)
	b = append(b, `,"data":`...)
	if b, err = appendRaw(b, m.Data); err != nil {
		return nil, err
	}
	if m.Traceparent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, m.Traceparent)
	}
	if m.Baggage != "" {
		b = append(b, `,"baggage":`...)
		b = appendString(b, m.Baggage)
	}
	if len(m.Metadata) > 0 {
		b = append(b, `,"metadata":`...)
		if b, err = appendRaw(b, m.Metadata); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// size is about m's encoded size.
func (m *invocationResult) size() int {
	n := 96 + len(m.InvocationID) + len(m.FunctionID) + len(m.Result)
	if e := m.Error; e != nil {
		n += 48 + len(e.Code) + len(e.Message) + len(e.Stacktrace)
	}
	return n
}

// appendJSON appends m as json.Marshal encodes it.
func (m *invocationResult) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = appendCallHead(b, m.Type, m.InvocationID, m.FunctionID)
	if len(m.Result) > 0 {
		b = append(b, `,"result":`...)
		if b, err = appendRaw(b, m.Result); err != nil {
			return nil, err
		}
	}
	if e := m.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, e.Code)
		b = append(b, `,"message":`...)
		b = appendString(b, e.Message)
		if e.Stacktrace != "" {
			b = append(b, `,"stacktrace":`...)
			b = appendString(b, e.Stacktrace)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendCallHead appends the fields a call's messages start with.
func appendCallHead(b []byte, typ, invocationID, functionID string) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"invocation_id":`...)
	b = appendString(b, invocationID)
	b = append(b, `,"function_id":`...)
	return appendString(b, functionID)
}

// appendString appends s as a JSON string, as json.Marshal does: printable
// ASCII other than what it escapes is copied, anything else goes through
// json.Marshal.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

var lineSeparator, paragraphSeparator = []byte("\u2028"), []byte("\u2029")

// appendRaw appends raw JSON as json.Marshal does: a compact text without
// the characters it escapes (<, >, &, U+2028, U+2029) is copied, anything
// else goes through json.Marshal (which compacts and escapes it, or
// refuses it).
func appendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if compact, err := engine.ScanJSONText(raw); err == nil && compact && !bytes.ContainsAny(raw, "<>&") &&
		!bytes.Contains(raw, lineSeparator) && !bytes.Contains(raw, paragraphSeparator) {
		return append(b, raw...), nil
	}
	q, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return append(b, q...), nil
}

// decodeCall decodes a worker's message into m as json.Unmarshal does, and
// reports true, when the message is one of a call's (its keys are all among
// those of invokefunction and invocationresult): it reads them by hand,
// without reflection, checking their raw JSON fields once. Anything else,
// and anything unusual in them (an escape in a key or a string, a string
// that is not plain ASCII, a null where a string is expected, JSON that
// may be invalid), it leaves to json.Unmarshal: it reports false, with m
// partly set.
func decodeCall(b []byte, m *inbound) bool {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		k, next, ok := plainString(b, i)
		key := string(k) // no copy: compared only
		if !ok {
			return false
		}
		i = skipSpace(b, next)
		if i == len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		switch key {
		case "type", "invocation_id", "function_id", "traceparent", "baggage":
			s, next, ok := plainString(b, i)
			if !ok {
				return false
			}
			switch key {
			case "type":
				m.Type = messageType(s)
			case "invocation_id":
				id := string(s)
				m.InvocationID = &id
			case "function_id":
				m.FunctionID = string(s)
			case "traceparent":
				m.Traceparent = string(s)
			case "baggage":
				m.Baggage = string(s)
			}
			i = next
		case "data", "result", "metadata":
			end, ok := rawValue(b, i)
			if !ok {
				return false
			}
			raw := json.RawMessage(b[i:end:end])
			switch key {
			case "data":
				m.Data = raw
			case "result":
				m.Result = raw
			case "metadata":
				m.Metadata = raw
			}
			i = end
		default:
			return false
		}
		i = skipSpace(b, i)
		if i == len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// skipSpace skips JSON white space from b[i].
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] when it holds printable ASCII
// without escapes, and returns its contents with the index after it.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i == len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// messageType is a message's type, without a copy for a call's.
func messageType(s []byte) string {
	switch string(s) {
	case typeInvokeFunction:
		return typeInvokeFunction
	case typeInvocationResult:
		return typeInvocationResult
	}
	return string(s)
}

// rawValue finds the end of the JSON value at b[i] (engine.SkipJSONValue) and checks
// that it is valid JSON text (engine.ValidJSONText, stricter than
// json.Unmarshal's check: a value it refuses goes to json.Unmarshal).
func rawValue(b []byte, i int) (end int, ok bool) {
	end = engine.SkipJSONValue(b, i)
	if end <= i {
		return 0, false
	}
	return end, engine.ValidJSONText(b[i:end]) == nil
}
