// Package resp owns the server side of the Redis wire format, RESP2 and
// RESP3: Reader turns the bytes a client sends into the arguments of one
// command at a time, and Writer turns replies into bytes.
//
// The Reader accepts the two request forms Redis accepts: multibulk, which
// every client library sends, and inline commands, which people type into
// telnet or nc. It is stricter than Redis in a few places where Redis trusts
// the peer: it checks the CRLF after each bulk, rejects a negative count
// other than -1, and applies every limit to inline commands too. (NUL is an
// ordinary byte in an inline word, where Redis would end the line.)
// Every length on the wire
// comes from a possibly hostile peer, so the Reader checks it against Limits
// before acting on it and never allocates more than a small fixed amount
// ahead of the bytes that actually arrived. A malformed request is reported
// as a *ProtocolError whose text is what Redis would send; the caller
// replies with it and closes that one connection, because the stream cannot
// be resynchronised.
//
// The Writer frames replies for the protocol negotiated with HELLO. Aggregate
// and null types that only RESP3 has (map, set, push, null, boolean, double)
// degrade to their RESP2 forms as Redis does, so handlers write one reply
// and never branch on the protocol.
//
// The package knows nothing about commands: it does not look at argument
// values, reply shapes or connection state such as authentication or
// subscriptions. That belongs to the server that uses it. It uses only the
// standard library and must not panic on any input.
package resp
