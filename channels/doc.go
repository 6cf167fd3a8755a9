// Package channels serves streaming data channels: one-way WebSocket pipes
// between two parties that reach the engine separately, as iii's
// engine::channels::create does.
//
// A caller creates a channel with the built-in function
// engine::channels::create (FnCreate) and gets two refs, a writer and a
// reader, that share the channel id and access key. Each end then opens its
// own WebSocket to GET /ws/channels/{id}?key=KEY&dir=write|read. Every frame
// the writer sends reaches the reader unchanged, in order and with the same
// type (text frames are messages, binary frames are bytes); there is no
// envelope. The writer's close, or its connection ending, is the end of the
// stream: the reader gets every buffered frame and then a normal close.
//
// The engine can hold one end of a channel itself: Hub.OpenReader and
// Hub.OpenWriter create a channel whose read (or write) end is a
// LocalReader (or LocalWriter) in the engine, already taken, and return the
// ref of the other end for a remote party. The http trigger uses them to
// pass request bodies to functions and to read streamed responses back.
// A LocalReader's Close removes its channel; a LocalWriter's Close ends
// the stream (still delivered to a reader that attaches within the TTL)
// and its Abort removes the channel.
//
// Where it sits: channels imports engine (to register FnCreate) and
// coder/websocket; only cmd wires a Hub into an engine and an HTTP mux.
//
// Concurrency: a Hub is safe for concurrent use. The goroutines of a
// connection (the writer's socket reader, coder/websocket's CloseRead) live
// inside ServeHTTP and end before it returns; local ends start none. The
// Hub owns the sweeper that removes channels whose ends did not both
// attach within Config.TTL (it starts with the first channel), and one
// goroutine per worker session that created channels, which removes them
// when the session ends. Close cancels every channel (local ends then
// fail), closes every live socket, stops those goroutines and waits for
// all of them.
//
// Flow control: each channel has a queue of buffer_size frames, and its
// bytes count against three caps: the channel's (MaxBufferBytes), its
// creator's (MaxConnBufferBytes, with MaxConnChannels channels per
// connection) and the hub's (MaxTotalBufferBytes). A writer takes a
// frame's bytes from all three before the frame is read off its socket.
// When the queue is full or a cap is reached the writer's socket is not
// read until a reader drains, so TCP pushes back on the writer (a
// LocalWriter's Write waits instead). A slow reader therefore slows its writer; it is
// not disconnected (unlike the gateway's subscribers, a channel has exactly
// one consumer, and losing frames would corrupt the stream).
package channels
