// The two ways to give a container its own root filesystem from an unpacked image: an
// overlayfs mount, or a full copy.
//
// Thread-safety: the functions are safe to call from any thread on distinct paths.
#ifndef PETREL_LIB_IMAGE_ROOTFS_H_
#define PETREL_LIB_IMAGE_ROOTFS_H_

#include <string>

#include "petrel/status.h"

namespace petrel::internal {

// Mounts overlayfs at `target` with `lower` read-only below `upper` (with `work`, on the
// same file system as `upper`). REQUIRES: all four exist; `upper` and `work` are empty.
// The error is an IOError with the kernel's errno (EPERM in a user namespace without
// the right, ENODEV without overlayfs, EINVAL for an unsuitable upper file system...).
// The options of mount("overlay", target, "overlay", 0, options) for these dirs.
std::string OverlayOptions(const std::string& lower, const std::string& upper,
                           const std::string& work);

Status MountOverlay(const std::string& lower, const std::string& upper, const std::string& work,
                    const std::string& target);

// Unmounts everything mounted on `target` (a busy mount is detached). OK when nothing is
// mounted there or `target` does not exist.
Status UnmountAll(const std::string& target);

// Copies the tree below the directory `from` into the empty directory `to`, keeping
// modes (setuid included), owners, times, symbolic links, hard links (within the tree),
// FIFOs and the xattrs security.capability and user.*. Links are copied, never followed;
// file data is cloned (reflink) where the file system can. Devices and sockets are not
// copied (an unpacked image has none). REQUIRES: `to` is not below `from`.
Status CopyTree(const std::string& from, const std::string& to);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_ROOTFS_H_
