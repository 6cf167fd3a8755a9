package engine

// Log attribute keys, shared by every package that logs about the engine.
const (
	LogFunctionID   = "function_id"
	LogWorkerID     = "worker_id"
	LogWorkerName   = "worker_name"
	LogTriggerID    = "trigger_id"
	LogInvocationID = "invocation_id"
)
