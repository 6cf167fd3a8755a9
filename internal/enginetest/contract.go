package enginetest

// TenFieldsSchema is a typical 10-field request schema, and TenFieldsValue
// a value it accepts: what the benchmarks of function contracts check.
const (
	TenFieldsSchema = `{"type":"object","properties":{"id":{"type":"string","minLength":1,"maxLength":64},"title":{"type":"string","maxLength":200},` +
		`"done":{"type":"boolean"},"priority":{"type":"integer","minimum":0,"maximum":5},"estimate":{"type":"number","minimum":0},` +
		`"status":{"enum":["open","doing","closed"]},"tags":{"type":"array","items":{"type":"string"},"maxItems":20},` +
		`"owner":{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]},` +
		`"due":{"type":"string","format":"date-time"},"note":{"type":["string","null"]}},"required":["id","title","done"],"additionalProperties":false}`
	TenFieldsValue = `{"id":"t-1","title":"write the docs","done":false,"priority":2,"estimate":1.5,"status":"open","tags":["docs","contracts"],` +
		`"owner":{"id":7,"name":"ann"},"due":"2026-12-08T09:00:00Z","note":null}`
)
