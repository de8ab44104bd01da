// Applying one image layer onto a root filesystem being built, safely.
//
// A layer is a tar (uncompressed, gzip, zstd, xz or bzip2) of files to add, replace or
// delete. Entries are applied in order with the OCI whiteout rules: ".wh.NAME" deletes
// NAME as lower layers left it, ".wh..wh..opq" in a directory deletes everything lower
// layers put there; whiteout files are never written.
//
// Layers are untrusted. An entry is refused, failing the whole layer, when
//  - its name is absolute, or ".." takes it above the root;
//  - its path passes through a symbolic link (links may be created, never written
//    through: every directory is opened with O_NOFOLLOW, one component at a time, below
//    a descriptor of the root);
//  - it is a hard link whose target is refused by the same rules;
//  - it is a character or block device, a socket or of an unknown type.
// Files are always created afresh (O_EXCL after removing what was there), so a write
// never lands in an inode shared with a hard link or outside the root.
// Kept: modes including setuid/setgid/sticky, owners (when running as root), mtimes of
// files, xattrs security.capability and user.*. Not kept: directory mtimes, ACLs, other
// xattrs (trusted.overlay.* in particular, which could steer overlayfs).
//
// Thread-safety: none.
#ifndef PETREL_LIB_IMAGE_LAYER_H_
#define PETREL_LIB_IMAGE_LAYER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/image/source.h"
#include "petrel/status.h"

namespace petrel::internal {

// What a layer's bytes hashed to, for the caller to check against the image's claims.
struct LayerDigests {
  std::string blob;  // "sha256:..." of the bytes as stored (maybe compressed)
  uint64_t blob_size = 0;
  std::string diff_id;  // "sha256:..." of the uncompressed tar
};

// Reads the whole layer from `source` and applies it below the directory `root_fd`.
// A layer whose uncompressed tar is larger than `max_bytes`, or that holds a file
// larger than that, is refused (InvalidArgument "layer: larger than N bytes
// uncompressed ...") as soon as that many bytes came out of the decompressor.
// Refusals are InvalidArgument `entry "<name>": <why>`; file system failures are IOError
// naming the entry. On failure the tree below `root_fd` is left part-applied (the
// caller throws it away), and digests->blob is still set when the rest of `source`
// could be read, so a caller can tell a corrupt blob from a hostile one.
Status ApplyLayer(ByteSource* source, int root_fd, uint64_t max_bytes, LayerDigests* digests);

// True for the extended attributes images keep (security.capability, user.*).
bool IsKeptXattr(std::string_view name);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_LAYER_H_
