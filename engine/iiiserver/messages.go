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
