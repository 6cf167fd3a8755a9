package natsfanout

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// ContractSubject carries the notice that a stream has a new contract,
// {"stream_name","version"}, to every gateway on the NATS server: one
// subject, one subscription per gateway.
const ContractSubject = "trine.contracts"

type contractNotice struct {
	Stream  string `json:"stream_name"`
	Version uint64 `json:"version"`
}

// PublishContract tells the gateways that stream's contract is now
// version.
func (p *Publisher) PublishContract(stream string, version uint64) error {
	b, err := json.Marshal(contractNotice{stream, version})
	if err != nil {
		return err
	}
	return p.nc.Publish(ContractSubject, b)
}

// SubscribeContracts calls h with every contract notice until cancel is
// called; it returns once the NATS server holds the interest. h runs on
// the NATS delivery goroutine and must not block.
func (s *Subscriber) SubscribeContracts(h func(stream string, version uint64)) (cancel func(), err error) {
	sub, err := s.nc.Subscribe(ContractSubject, func(m *nats.Msg) {
		var n contractNotice
		if json.Unmarshal(m.Data, &n) == nil && n.Stream != "" {
			h(n.Stream, n.Version)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
