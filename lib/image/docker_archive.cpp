#include "lib/image/docker_archive.h"

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

#include "lib/image/archive_lib.h"
#include "lib/image/digest.h"
#include "lib/image/libcrypto_sha256.h"
#include "lib/image/local_image.h"
#include "lib/spec/image_ref.h"
#include "lib/util/fs.h"

namespace petrel::internal {

namespace {

using nlohmann::json;

constexpr size_t kBlock = 64 * 1024;
constexpr const char* kWhat = "docker-archive";

struct ArchiveWriteFree {
  void operator()(struct archive* a) const { PETREL_ARCHIVE(archive_write_free)(a); }
};
struct ArchiveEntryFree {
  void operator()(struct archive_entry* e) const { PETREL_ARCHIVE(archive_entry_free)(e); }
};

// Where libarchive's output goes: `fd`, and the first failure to write it.
struct Output {
  int fd = -1;
  Status status;
  bool cut = false;  // after a failure: what libarchive still writes is dropped
};

la_ssize_t WriteOut(struct archive*, void* client, const void* buf, size_t size) {
  auto* out = static_cast<Output*>(client);
  if (out->cut) return static_cast<la_ssize_t>(size);
  out->status = WriteAll(out->fd, std::string_view(static_cast<const char*>(buf), size), kWhat);
  return out->status.ok() ? static_cast<la_ssize_t>(size) : -1;
}

// The Status of a failed libarchive call: the write to `fd` that failed, else
// libarchive's own complaint.
Status Failed(struct archive* a, const Output& out) {
  return out.status.ok() ? ArchiveError(a, kWhat) : out.status;
}

Status WriteHeader(struct archive* a, const Output& out, const std::string& name, int64_t size) {
  std::unique_ptr<struct archive_entry, ArchiveEntryFree> entry(
      PETREL_ARCHIVE(archive_entry_new)());
  if (!entry) return Status::IOError(std::string(kWhat) + ": out of memory");
  PETREL_ARCHIVE(archive_entry_set_pathname)(entry.get(), name.c_str());
  PETREL_ARCHIVE(archive_entry_set_filetype)(entry.get(), AE_IFREG);
  PETREL_ARCHIVE(archive_entry_set_perm)(entry.get(), 0644);
  PETREL_ARCHIVE(archive_entry_set_size)(entry.get(), size);
  if (PETREL_ARCHIVE(archive_write_header)(a, entry.get()) < ARCHIVE_WARN) return Failed(a, out);
  return Status::OK();
}

Status WriteData(struct archive* a, const Output& out, const void* data, size_t size) {
  if (size == 0) return Status::OK();
  la_ssize_t n = PETREL_ARCHIVE(archive_write_data)(a, data, size);
  if (n < 0 || static_cast<size_t>(n) != size) return Failed(a, out);
  return Status::OK();
}

Status WriteSmallFile(struct archive* a, const Output& out, const std::string& name,
                      const std::string& data) {
  PETREL_RETURN_IF_ERROR(WriteHeader(a, out, name, static_cast<int64_t>(data.size())));
  return WriteData(a, out, data.data(), data.size());
}

// The compression a blob beginning with `head` has, by its magic number; "" for none
// known (an uncompressed tar).
std::string_view CompressionOf(std::string_view head) {
  if (head.substr(0, 2) == "\x1f\x8b") return "gzip";
  if (head.substr(0, 4) == "\x28\xb5\x2f\xfd") return "zstd";
  if (head.substr(0, 6) == std::string_view("\xfd"
                                            "7zXZ\0",
                                            6))
    return "xz";
  if (head.substr(0, 3) == "BZh") return "bzip2";
  return "";
}

// Reads until `size` bytes or the end of `bytes`: fewer only at the end.
Result<size_t> ReadFull(ByteSource* bytes, char* buf, size_t size) {
  size_t got = 0;
  while (got < size) {
    PETREL_ASSIGN_OR_RETURN(const size_t n, bytes->Read(buf + got, size - got));
    if (n == 0) break;
    got += n;
  }
  return got;
}

// The name `layer` has in the archive.
std::string LayerEntry(const LayerRef& layer) {
  const std::string& digest = layer.digest.empty() ? layer.diff_id : layer.digest;
  return digest.substr(7) + "/layer.tar";  // REQUIRES: IsSha256Digest(digest)
}

// Streams `layer` into the entry `entry`, checking it on the way; its last block is
// written only once it is found good. Errors without the layer's name.
Status WriteLayer(struct archive* a, const Output& out, ByteSource* bytes, const LayerRef& layer,
                  const std::string& entry) {
  const int64_t stored = bytes->Size();
  if (layer.size >= 0 && stored >= 0 && stored != layer.size) {
    return Status::InvalidArgument("size is " + std::to_string(stored) +
                                   " bytes, descriptor says " + std::to_string(layer.size));
  }
  const int64_t size = layer.size >= 0 ? layer.size : stored;
  if (size < 0) return Status::InvalidArgument("size not known before it is read");
  std::unique_ptr<char[]> buf(new char[kBlock]), held(new char[kBlock]);
  PETREL_ASSIGN_OR_RETURN(size_t n, ReadFull(bytes, buf.get(), kBlock));
  const std::string_view compression = CompressionOf(std::string_view(buf.get(), n));
  if (compression == "zstd") {
    return Status::NotSupported("compressed with zstd, which dockerd 20.10 cannot load");
  }
  // From a docker-archive only an uncompressed layer has a digest to meet: its diff_id.
  const std::string& want =
      !layer.digest.empty() || !compression.empty() ? layer.digest : layer.diff_id;
  PETREL_RETURN_IF_ERROR(WriteHeader(a, out, entry, size));
  Sha256 hash{LoadedLibcryptoSha256()};
  uint64_t total = 0;
  size_t held_size = 0;
  while (n > 0) {
    total += n;
    if (total > static_cast<uint64_t>(size)) break;
    hash.Update(buf.get(), n);
    PETREL_RETURN_IF_ERROR(WriteData(a, out, held.get(), held_size));
    std::swap(buf, held);
    held_size = n;
    PETREL_ASSIGN_OR_RETURN(n, ReadFull(bytes, buf.get(), kBlock));
  }
  const std::string claim = layer.size >= 0 ? "descriptor says " : "its file said ";
  if (total > static_cast<uint64_t>(size)) {
    return Status::InvalidArgument("larger than the " + std::to_string(size) + " bytes the " +
                                   (layer.size >= 0 ? "descriptor says" : "file said"));
  }
  if (total < static_cast<uint64_t>(size)) {
    return Status::InvalidArgument("size is " + std::to_string(total) + " bytes, " + claim +
                                   std::to_string(size));
  }
  const std::string got = FinishDigest(&hash);
  if (!want.empty() && got != want) {
    return Status::InvalidArgument("digest mismatch (content is " + got + ")");
  }
  return WriteData(a, out, held.get(), held_size);
}

}  // namespace

Status WriteDockerArchive(ImageSource* source, const ImagePlan& plan,
                          const std::vector<std::string>& repo_tags, int fd) {
  const std::string config_digest = Sha256Digest(plan.config_json);
  if (config_digest != plan.id) {
    return Status::InvalidArgument("config " + plan.id + ": digest mismatch (content is " +
                                   config_digest + ")");
  }
  json tags = json::array();
  for (const std::string& tag : repo_tags) {
    Result<ImageReference> r = ParseImageReference(tag);
    if (!r.ok() || HasPathTransport(tag)) {
      return Status::InvalidArgument("repo tag \"" + tag + "\": " +
                                     (r.ok() ? "not a registry reference" : r.status().message()));
    }
    if (!r->digest.empty()) {
      return Status::InvalidArgument("repo tag \"" + tag +
                                     "\": has a digest (Docker tags by name:tag only)");
    }
    tags.push_back(r->domain + "/" + r->repository + ":" + r->tag);
  }
  const std::string config_entry = plan.id.substr(7) + ".json";
  std::vector<std::string> layer_entries;
  for (const LayerRef& layer : plan.layers) layer_entries.push_back(LayerEntry(layer));
  const std::string manifest =
      json::array({{{"Config", config_entry}, {"RepoTags", tags}, {"Layers", layer_entries}}})
          .dump();

  Output out;
  out.fd = fd;
  std::unique_ptr<struct archive, ArchiveWriteFree> a(PETREL_ARCHIVE(archive_write_new)());
  if (!a) return Status::IOError(std::string(kWhat) + ": out of memory");
  Status s = [&]() -> Status {
    // A pipe's reader needs no padding after the end of the tar.
    if (PETREL_ARCHIVE(archive_write_set_format_pax_restricted)(a.get()) != ARCHIVE_OK ||
        PETREL_ARCHIVE(archive_write_set_bytes_in_last_block)(a.get(), 1) != ARCHIVE_OK ||
        PETREL_ARCHIVE(archive_write_open)(a.get(), &out, nullptr, WriteOut, nullptr) !=
            ARCHIVE_OK) {
      return Failed(a.get(), out);
    }
    PETREL_RETURN_IF_ERROR(WriteSmallFile(a.get(), out, "manifest.json", manifest));
    PETREL_RETURN_IF_ERROR(WriteSmallFile(a.get(), out, config_entry, plan.config_json));
    std::set<std::string> written;
    for (size_t i = 0; i < plan.layers.size(); i++) {
      const LayerRef& layer = plan.layers[i];
      if (!written.insert(layer_entries[i]).second) continue;  // in the image twice
      Status streamed = source->StreamFile(layer.name, [&](ByteSource* bytes) {
        return WriteLayer(a.get(), out, bytes, layer, layer_entries[i]);
      });
      if (!streamed.ok()) {
        return streamed.WithContext("layer " +
                                    (layer.digest.empty() ? layer.diff_id : layer.digest));
      }
    }
    if (PETREL_ARCHIVE(archive_write_close)(a.get()) != ARCHIVE_OK) return Failed(a.get(), out);
    return Status::OK();
  }();
  // Never a clean end after a failure: the padding of the entry cut short and the tar's
  // end, which freeing the writer writes, are dropped. (archive_write_fail would skip
  // them, but libarchive 3.6 then leaks its output buffer.)
  if (!s.ok()) out.cut = true;
  return s;
}

Result<std::string> WriteDockerArchiveOf(const std::string& ref,
                                         const std::vector<std::string>& repo_tags, int fd) {
  Result<LocalRef> parsed = ParseLocalRef(ref);
  if (!parsed.ok()) return parsed.status().WithContext(ref);
  PETREL_RETURN_IF_ERROR(StatLocalImage(ref, *parsed).status());
  // Declared before the source: libarchive stays loaded until its readers are freed.
  ArchiveUse archive;
  if (!archive.status().ok()) return archive.status().WithContext(ref);
  std::unique_ptr<ImageSource> source = OpenLocalImage(*parsed);
  Result<ImagePlan> plan = ReadLocalPlan(source.get(), *parsed);
  if (!plan.ok()) return plan.status().WithContext(ref);
  PETREL_RETURN_IF_ERROR(WriteDockerArchive(source.get(), *plan, repo_tags, fd).WithContext(ref));
  return plan->id;
}

}  // namespace petrel::internal
