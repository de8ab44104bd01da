#include "runtime-adapters/containerd/images.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "lib/util/json.h"
#include "lib/util/sha256.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {
namespace {

constexpr char kLayerTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kLayerGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kLayerZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
// How long an import's lease holds what it made should petrel die before dropping it.
constexpr std::chrono::hours kLeaseExpiry{1};

// The time `t` in RFC 3339, UTC: "2026-12-03T19:05:00Z".
std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A layer's media type from its first bytes: gzip, zstd, or a plain tar.
const char* LayerType(const std::string& head) {
  const auto* b = reinterpret_cast<const unsigned char*>(head.data());
  if (head.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b) return kLayerGzip;
  if (head.size() >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
    return kLayerZstd;
  }
  return kLayerTar;
}

// Writes `blob` from `bytes`; a blob containerd has is fine (then leased).
Status WriteSmall(GrpcChannel* channel, const std::string& ref, const ContainerdContent& blob,
                  const std::string& bytes) {
  size_t at = 0;
  Status s = ContainerdWriteContent(channel, ref, blob, [&](char* buf, size_t size) {
    const size_t n = std::min(size, bytes.size() - at);
    std::copy_n(bytes.data() + at, n, buf);
    at += n;
    return Result<size_t>(n);
  });
  return s.code() == Status::Code::kAlreadyExists ? Status::OK() : s;
}

// One import: what ContainerdImportImage does once its lease is there.
class Import {
 public:
  Import(GrpcChannel* channel, std::string snapshotter, std::string lease, ImageSource* source,
         const ImagePlan& plan)
      : channel_(channel),
        snapshotter_(std::move(snapshotter)),
        lease_(std::move(lease)),
        source_(source),
        plan_(plan) {}

  Result<ContainerdImported> Run(const std::string& name,
                                 const std::map<std::string, std::string>& labels) {
    std::vector<std::string> diff_ids;
    for (const LayerRef& layer : plan_.layers) diff_ids.push_back(layer.diff_id);
    std::vector<ContainerdContent> layers;
    for (const LayerRef& layer : plan_.layers) {
      PETREL_ASSIGN_OR_RETURN(ContainerdContent blob, WriteLayer(layer));
      layers.push_back(std::move(blob));
    }
    ContainerdImported imported;
    imported.chain_id = ContainerdChainId(diff_ids);
    // The config holds the top snapshot, the manifest its config and layers.
    ContainerdContent config;
    config.media_type = kConfigType;
    config.digest = plan_.id;
    config.size = static_cast<int64_t>(plan_.config_json.size());
    if (!imported.chain_id.empty()) {
      config.labels["containerd.io/gc.ref.snapshot." + snapshotter_] = imported.chain_id;
    }
    PETREL_RETURN_IF_ERROR(WriteSmall(channel_, Ref(config.digest), config, plan_.config_json)
                               .WithContext("config " + config.digest));
    nlohmann::json manifest = {
        {"schemaVersion", 2},
        {"mediaType", kManifestType},
        {"config", {{"mediaType", kConfigType}, {"digest", config.digest}, {"size", config.size}}},
        {"layers", nlohmann::json::array()}};
    ContainerdContent target;
    target.media_type = kManifestType;
    target.labels["containerd.io/gc.ref.content.config"] = config.digest;
    for (size_t i = 0; i < layers.size(); i++) {
      manifest["layers"].push_back({{"mediaType", layers[i].media_type},
                                    {"digest", layers[i].digest},
                                    {"size", layers[i].size}});
      target.labels["containerd.io/gc.ref.content.l." + std::to_string(i)] = layers[i].digest;
    }
    const std::string manifest_json = manifest.dump();
    target.digest = "sha256:" + Sha256Hex(manifest_json);
    target.size = static_cast<int64_t>(manifest_json.size());
    PETREL_RETURN_IF_ERROR(WriteSmall(channel_, Ref(target.digest), target, manifest_json)
                               .WithContext("manifest " + target.digest));
    imported.manifest = target.digest;
    PETREL_RETURN_IF_ERROR(Unpack(layers, diff_ids));
    PETREL_RETURN_IF_ERROR(Name(name, target, labels));
    return imported;
  }

 private:
  // The writer's ref of blob `digest`, this import's own: imports of images that share
  // a blob (in this process or another) each write it, and the second commit is
  // AlreadyExists, where one ref would be "locked" for the second.
  std::string Ref(const std::string& digest) const { return lease_ + "-" + digest; }

  // Layer `layer` into the content store as it is: its descriptor.
  Result<ContainerdContent> WriteLayer(const LayerRef& layer) {
    const std::string what = "layer " + (layer.digest.empty() ? layer.name : layer.digest);
    ContainerdContent blob;
    blob.digest = layer.digest;
    blob.size = layer.size;
    // Its first bytes say how it is compressed; a `docker save` layer, a plain tar,
    // has its diff id as its digest, and its size from the tar it is in.
    std::string head;
    PETREL_RETURN_IF_ERROR(source_
                               ->StreamFile(layer.name,
                                            [&](ByteSource* in) -> Status {
                                              head.resize(4);
                                              size_t got = 0;
                                              while (got < head.size()) {
                                                PETREL_ASSIGN_OR_RETURN(
                                                    size_t n,
                                                    in->Read(head.data() + got, head.size() - got));
                                                if (n == 0) break;
                                                got += n;
                                              }
                                              head.resize(got);
                                              if (blob.size < 0) blob.size = in->Size();
                                              return Status::OK();
                                            })
                               .WithContext(what));
    blob.media_type = LayerType(head);
    if (blob.digest.empty()) {
      if (blob.media_type != std::string(kLayerTar)) {
        return Status::InvalidArgument(what +
                                       ": compressed, and the image does not give its digest");
      }
      blob.digest = layer.diff_id;
    }
    if (blob.size < 0) return Status::InvalidArgument(what + ": its size is not known");
    Status s = source_->StreamFile(layer.name, [&](ByteSource* in) -> Status {
      return ContainerdWriteContent(channel_, Ref(blob.digest), blob,
                                    [in](char* buf, size_t size) { return in->Read(buf, size); });
    });
    if (!s.ok() && s.code() != Status::Code::kAlreadyExists) return s.WithContext(what);
    return blob;
  }

  // The layers unpacked into committed snapshots named by their chain ids, each on the
  // one below; those containerd has are kept.
  Status Unpack(const std::vector<ContainerdContent>& layers,
                const std::vector<std::string>& diff_ids) {
    std::string parent;
    for (size_t i = 0; i < layers.size(); i++) {
      const std::string chain =
          ContainerdChainId(std::vector<std::string>(diff_ids.begin(), diff_ids.begin() + i + 1));
      const std::string what = "layer " + layers[i].digest;
      Result<ContainerdSnapshot> have = ContainerdStatSnapshot(channel_, snapshotter_, chain);
      if (have.ok() && have->committed) {
        parent = chain;
        continue;
      }
      if (!have.ok() && !have.status().IsNotFound()) return have.status().WithContext(what);
      const std::string key = "petrel-extract-" + lease_ + "-" + std::to_string(i);
      Result<std::vector<ContainerdMount>> mounts =
          ContainerdPrepareSnapshot(channel_, snapshotter_, key, parent, {});
      if (!mounts.ok()) return mounts.status().WithContext(what);
      Result<ContainerdContent> applied = ContainerdApplyDiff(channel_, layers[i], *mounts);
      Status s = applied.status();
      if (s.ok() && applied->digest != diff_ids[i]) {
        s = Status::InvalidArgument("unpacked, it is " + applied->digest + ", not the " +
                                    diff_ids[i] + " the config says");
      }
      if (s.ok()) s = ContainerdCommitSnapshot(channel_, snapshotter_, chain, key, {});
      if (!s.ok()) {
        (void)ContainerdRemoveSnapshot(channel_, snapshotter_, key);
        if (s.code() != Status::Code::kAlreadyExists) return s.WithContext(what);
      }
      parent = chain;
    }
    return Status::OK();
  }

  // `name` for image `target` with `labels`.
  Status Name(const std::string& name, const ContainerdContent& target,
              const std::map<std::string, std::string>& labels) {
    ContainerdImage image;
    image.name = name;
    image.labels = labels;
    image.target = target;
    image.target.labels.clear();
    return ContainerdNameImage(channel_, name, image);
  }

  GrpcChannel* const channel_;
  const std::string snapshotter_;
  const std::string lease_;
  ImageSource* const source_;
  const ImagePlan& plan_;
};

}  // namespace

std::string ContainerdChainId(const std::vector<std::string>& diff_ids) {
  std::string chain;
  for (const std::string& id : diff_ids) {
    chain = chain.empty() ? id : "sha256:" + Sha256Hex(chain + " " + id);
  }
  return chain;
}

Status ContainerdNameImage(GrpcChannel* channel, const std::string& name,
                           const ContainerdImage& image) {
  Result<ContainerdImage> have = ContainerdGetImage(channel, name);
  if (have.ok() && have->target.digest == image.target.digest && have->labels == image.labels) {
    return Status::OK();
  }
  if (have.ok()) {
    PETREL_RETURN_IF_ERROR(ContainerdDeleteImage(channel, name, false));
  } else if (!have.status().IsNotFound()) {
    return have.status();
  }
  ContainerdImage named = image;
  named.name = name;
  Status made = ContainerdCreateImage(channel, named);
  if (made.code() != Status::Code::kAlreadyExists) return made;
  // Named meanwhile by another import: fine when it is this image.
  PETREL_ASSIGN_OR_RETURN(const ContainerdImage now, ContainerdGetImage(channel, name));
  return now.target.digest == image.target.digest ? Status::OK() : made;
}

Result<ContainerdImported> ContainerdImportImage(GrpcChannel::Options options,
                                                 const std::string& snapshotter,
                                                 const std::string& name, ImageSource* source,
                                                 const ImagePlan& plan,
                                                 const std::map<std::string, std::string>& labels) {
  static std::atomic<uint64_t> imports{0};
  const auto now = std::chrono::system_clock::now();
  const std::string lease =
      "petrel-import-" + std::to_string(getpid()) + "-" + std::to_string(imports++) + "-" +
      std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
  options.lease.clear();
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> plain, GrpcChannel::Open(options));
  PETREL_RETURN_IF_ERROR(ContainerdCreateLease(
      plain.get(), lease, {{"containerd.io/gc.expire", Rfc3339(now + kLeaseExpiry)}}));
  options.lease = lease;
  Result<ContainerdImported> imported = [&]() -> Result<ContainerdImported> {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, GrpcChannel::Open(options));
    return Import(channel.get(), snapshotter, lease, source, plan).Run(name, labels);
  }();
  // The image's name holds what it needs now; what a failed import made goes.
  (void)ContainerdDeleteLease(plain.get(), lease, false);
  if (!imported.ok())
    return imported.status().WithContext("import of " + name + " into containerd");
  return imported;
}

}  // namespace petrel::internal
