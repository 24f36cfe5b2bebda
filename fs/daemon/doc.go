// Package daemon is how a command reaches a store, mounted or not: one
// Store interface, backed by the running mount daemon (over its control
// socket) or by the store opened in this process when no daemon serves
// it. Open(path) takes a store directory or its mountpoint.
//
// The daemon's side is Daemon (the store it holds, its filesystem, one gc
// at a time and what the runs did), served by Listen on the control
// socket ckptfs.sock inside the store directory. Only root, the store's
// owner and the daemon's own user may connect (the socket is 0600 and
// owned by the store's owner; each request's SO_PEERCRED is checked too).
//
// The protocol is HTTP over that socket. Each typed request is a POST of
// its JSON body to /v1/OP; the reply is newline-delimited JSON lines:
//
//	line                                   when
//	-------------------------------------  -------------------------------
//	{"phase":P,"done":D,"total":T}         progress (only if ?progress=1)
//	{"result":R}                           the last line, on success
//	{"error":MSG,"kind":K}                 the last line, on failure
//
//	OP           request body    result
//	-----------  --------------  -----------------------------------------
//	stats        {}              gc.Stats
//	writing      {}              []fs.Writing (files being written now)
//	generations  gc.Policy       []gc.Generation
//	fsck         {}              gc.FsckReport
//	repair       {}              RepairReport
//	gc           GCRequest       GCReport
//
// Kinds: "denied" (the peer may not control the store: Error is a
// *DeniedError), "bad-request", "failed" (the operation's own error). A
// daemon of an older ckptfs, without /v1, is told apart and named.
//
// Two requests take over their connection once the reply's header is
// sent: /v1/transfer speaks the transfer stream protocol (package
// fs/transfer) on it, as the peer's user (DialTransfer); /v1/receive
// (body ReceiveRequest) then takes one descriptor passed with SCM_RIGHTS,
// an xl remus stream the daemon reads itself, and writes progress lines
// back, the last one "error: ..." (SendStream).
package daemon
