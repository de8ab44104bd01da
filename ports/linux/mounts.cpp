// The mount part of the Linux port: overlayfs for containers' root filesystems.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>

#include "lib/util/fs.h"
#include "ports/linux/linux_port.h"

namespace petrel::internal {
namespace {

// overlayfs splits its options at ',' and lowerdir at ':'; a backslash escapes both.
std::string EscapeOverlayPath(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string LinuxPort::OverlayMountData(const std::string& lower, const std::string& upper,
                                        const std::string& work) {
  return "lowerdir=" + EscapeOverlayPath(lower) + ",upperdir=" + EscapeOverlayPath(upper) +
         ",workdir=" + EscapeOverlayPath(work);
}

Status LinuxPort::MountOverlay(const std::string& target, const std::string& data) {
  if (mount("overlay", target.c_str(), "overlay", 0, data.c_str()) != 0) {
    return ErrnoError(target, "mount overlay", errno);
  }
  return Status::OK();
}

Status LinuxPort::UnmountAll(const std::string& target) {
  // Mounts may be stacked on the same directory; each umount removes the top one.
  for (int i = 0; i < 64; i++) {
    if (umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) continue;
    int err = errno;
    if (err == EBUSY) {
      if (umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
      err = errno;
    }
    if (err == EINVAL || err == ENOENT) return Status::OK();  // not (or no longer) mounted
    // Without the right to unmount, nothing there can have been mounted by us.
    if (err == EPERM && geteuid() != 0) return Status::OK();
    return ErrnoError(target, "unmount", err);
  }
  return Status::IOError(target + ": still mounted after 64 unmounts");
}

}  // namespace petrel::internal
