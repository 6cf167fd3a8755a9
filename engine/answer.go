package engine

import (
	"encoding/json"
	"reflect"

	"github.com/trinehq/trine/codes"
)

// The engine's own listings (functions, workers, trigger types, triggers
// and the *::info answers) grow with what is registered. An answer past
// Config.MaxListBytes is refused with message_too_large before it is
// encoded: its size is summed row by row, each row encoded alone, so the
// refusal never holds more than one row.

// marshalAnswer encodes v, the answer of built-in fn, unless it would be
// larger than the engine's list cap.
func (e *Engine) marshalAnswer(fn string, v any) ([]byte, error) {
	if n := answerSize(reflect.ValueOf(v), e.cfg.MaxListBytes); n > e.cfg.MaxListBytes {
		return nil, Errorf(codes.MessageTooLarge, "%s: the answer would be larger than %d bytes (--max-list-bytes); narrow it with prefix (or search, trigger_type, function_id, worker)", fn, e.cfg.MaxListBytes)
	}
	return json.Marshal(v)
}

// answerSize estimates the encoded size of v from the sizes of its parts,
// stopping once it passes limit.
func answerSize(v reflect.Value, limit int) int {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return 4
		}
		return answerSize(v.Elem(), limit)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len() + 2
		}
		fallthrough
	case reflect.Array:
		n := 2
		for i := 0; i < v.Len() && n <= limit; i++ {
			n += answerSize(v.Index(i), limit-n) + 1
		}
		return n
	case reflect.Map:
		n := 2
		for it := v.MapRange(); it.Next() && n <= limit; {
			n += answerSize(it.Key(), limit-n) + answerSize(it.Value(), limit-n) + 2
		}
		return n
	case reflect.Struct:
		n := 2
		for i := 0; i < v.NumField() && n <= limit; i++ {
			if v.Type().Field(i).IsExported() {
				n += len(v.Type().Field(i).Name) + 4 + answerSize(v.Field(i), limit-n)
			}
		}
		return n
	default:
		b, _ := json.Marshal(v.Interface())
		return len(b)
	}
}
