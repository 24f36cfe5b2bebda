// Package receive is the receiving end of `xl remus` (`ckptfs xen
// receive`): Run answers nothing itself (the caller sends Banner), follows
// the checkpointed stream through a read-ahead buffer, and a Publisher
// stores each page as it arrives and publishes each complete checkpoint as
// a generation of the guest's lineage, a plain `xl save` image that stock
// `xl restore` reads.
//
// It needs of the store only what its consumer interfaces say: Chunks (a
// chunkstore.Store) and Index / Namespace (an index.Index). The content
// engine (fs/content) is used for nothing but its CDC parameters and
// cutter; the engine knows nothing of remus.
package receive
