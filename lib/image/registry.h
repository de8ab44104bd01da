// Images on an OCI distribution (v2) registry, read as if they were an OCI image layout,
// so that the layout reader (layout.h) and the unpacker check and apply them exactly as
// they do local files.
//
// The source's "index.json" names the manifest the reference points at (fetched from
// the registry by tag, or by digest); every "blobs/sha256/<hex>" it is asked for is
// served from the store's blob cache, <store>/blobs/sha256/<hex>, and fetched into it
// first when missing: manifests (the one named and those an index or manifest list
// names) from /v2/<repo>/manifests/, all else from /v2/<repo>/blobs/. A blob is
// downloaded into <store>/partial/sha256/<hex> (a manifest into <store>/tmp-blob-*,
// which ImageStore::Open removes), hashed as it arrives, and renamed into the cache
// only when its digest is the one asked for; a mismatch deletes it and fails naming
// the blob. A blob in the cache is never fetched again, whichever image needs it.
//
// Durability: a blob is renamed into the cache without an fsync; the store syncs the
// file system once when it commits the image (ImageStore::Unpack's syncfs), so a pull
// writes its bytes to the disk once, as they arrive, and waits for them once. After a
// power cut the cache may then hold a blob whose bytes never reached the disk: a blob
// found there that this source did not write, and that options.durable does not vouch
// for, is hashed again before it is used, and removed and fetched anew when damaged.
//
// Transport: HTTPS with the system CA store (and options.ca_file); plain HTTP only for
// loopback registries (localhost, 127.0.0.0/8) and those listed as insecure.
// Authentication, after a 401: a Bearer challenge has a token asked of its realm, with
// the registry's credential as HTTP basic auth when there is one, else anonymously
// (what Docker Hub and GHCR want for public images); a Basic challenge has the request
// sent again with the credential. A credential is never sent over plain HTTP to a
// host that is not loopback, nor (libcurl's rule) to another host after a redirect. A
// 401 without a credential, or with a refused one, is PermissionDenied saying which.
// Every connection has
// a connect deadline and a low-speed limit; a manifest may be at most kMaxManifestSize
// bytes and a blob at most max_blob_bytes. A blob whose download broke off is asked for
// again from where it stopped (HTTP Range) on the next attempt, and by the next pull
// (also after a kill -9 or a power cut): the partial file stays until the blob is whole,
// its bytes are hashed again, and the whole is still checked against the digest (a
// damaged partial file costs one download from the start).
//
// Thread-safety: a source belongs to one owner; sources of the same store may fetch at
// the same time (a blob's partial file is locked: a second download of it waits, then
// finds it in the cache; the rename is atomic).
#ifndef PETREL_LIB_IMAGE_REGISTRY_H_
#define PETREL_LIB_IMAGE_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/image/registry_auth.h"
#include "lib/image/source.h"
#include "lib/spec/image_ref.h"

namespace petrel::internal {
class Semaphore;  // lib/util/workers.h
}  // namespace petrel::internal

namespace petrel::internal {

constexpr size_t kMaxManifestSize = 4 << 20;

struct RegistryOptions {
  std::string store_dir;  // the image store's directory
  uint64_t max_blob_bytes = uint64_t{4} << 30;
  // host[:port] of registries reached over plain HTTP (besides loopback ones).
  std::vector<std::string> insecure_registries;
  int attempts = 3;  // per request, for connection failures and 5xx answers
  std::optional<RegistryCredential> credential;  // for this registry, if any
  std::string auth_file;  // where credentials are configured, for messages ("" none)
  std::string ca_file;    // a PEM bundle trusted besides the system store, or ""
  // Hears the download of a (non-manifest) blob: the bytes of `digest` had so far, 0
  // again when it starts over. Called on the fetching thread. May be empty.
  std::function<void(const std::string& digest, uint64_t bytes)> on_bytes;
  // Held while a (non-manifest) blob downloads, retries included: the limit on
  // downloads at once that the sources of every pull share. Null: no limit.
  Semaphore* download_slots = nullptr;
  // PullOptions::cancelled: a request in flight is aborted, and no retry follows, once
  // it answers true. May be empty.
  std::function<bool()> cancelled;
  // Whether blob `digest`, found in the cache, is known to be whole on disk (written
  // before a sync that committed an image naming it): it is used without hashing it
  // again. Called on the fetching thread. Empty: every cached blob is hashed first.
  std::function<bool(const std::string& digest)> durable;
};

// Below a store's directory: the blob cache, and the downloads under way.
inline constexpr char kRegistryBlobDir[] = "blobs/sha256";
inline constexpr char kRegistryPartialDir[] = "partial/sha256";

// Makes the directories registry pulls keep blobs in below `store_dir` (the cache and
// the partial downloads), durably. A store calls it when it opens, so that a first pull
// does not wait for it; a source calls it again before each download (a stat when they
// are there).
Status MakeRegistryDirs(const std::string& store_dir);

// The registry image `ref`. REQUIRES: a CurlUse alive as long as the source.
std::unique_ptr<ImageSource> RegistrySource(const ImageReference& ref,
                                            const RegistryOptions& options);

// True for hosts that are this machine: "localhost" and 127.0.0.0/8.
bool IsLoopbackHost(const std::string& host);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_REGISTRY_H_
