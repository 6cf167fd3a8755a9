// Package natsfanout carries StreamModule change events over NATS: the
// engine publishes each encoded event once on its group's subject, and
// gateways subscribe to the subjects of the groups their clients watch.
//
// Subjects are built only by Subject, from names encoded by one injective
// function (subject.Token), so any UTF-8 stream or group name — dots, wildcards,
// spaces, emoji — maps to its own subject and can never match another
// group's subscription.
package natsfanout
