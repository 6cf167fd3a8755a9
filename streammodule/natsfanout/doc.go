// Package natsfanout carries StreamModule change events over NATS: the
// engine publishes each encoded event once on its group's subject, and
// gateways subscribe to the subjects of the groups their clients watch.
//
// Subjects are built only by Subject, from names encoded by one injective
// function (subject.Token), so any UTF-8 stream or group name — dots, wildcards,
// spaces, emoji — maps to its own subject and can never match another
// group's subscription.
//
// Concurrency: a Publisher, a Subscriber and a History are safe for
// concurrent use. A Subscriber's handlers run on the NATS client's
// goroutine and must not block (the gateway hands events to each socket's
// bounded queue); cancel functions unsubscribe. The package starts no
// goroutines of its own but one per Presence.Watch, which its cancel
// stops and waits for.
//
// Presence shares gateways' presence members through a JetStream
// key-value bucket whose TTL is each gateway's lease: a gateway renews its
// entries by heartbeat, and those of a gateway that stops expire.
package natsfanout
