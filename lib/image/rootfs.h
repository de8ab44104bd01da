// A container's own root filesystem as a full copy of an unpacked image, where an
// overlay mount (Port::MountOverlay) is refused.
//
// Thread-safety: the functions are safe to call from any thread on distinct paths.
#ifndef PETREL_LIB_IMAGE_ROOTFS_H_
#define PETREL_LIB_IMAGE_ROOTFS_H_

#include <string>

#include "petrel/status.h"

namespace petrel::internal {

// Copies the tree below the directory `from` into the empty directory `to`, keeping
// modes (setuid included), owners, times, symbolic links, hard links (within the tree),
// FIFOs and the xattrs security.capability and user.*. Links are copied, never followed;
// file data is cloned (reflink) where the file system can. Devices and sockets are not
// copied (an unpacked image has none). REQUIRES: `to` is not below `from`.
Status CopyTree(const std::string& from, const std::string& to);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_ROOTFS_H_
