#include "lib/image/layout.h"

#include <nlohmann/json.hpp>

#include "lib/image/digest.h"
#include "lib/util/json.h"

namespace petrel::internal {

namespace {

using nlohmann::json;

constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";
constexpr int kMaxIndexDepth = 2;

// The GOARCH name of this machine, as image platforms spell it.
constexpr const char* HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "386";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#else
  return "";
#endif
}

struct Descriptor {
  std::string digest;
  int64_t size = -1;
  const json* platform = nullptr;
  std::string ref_name;
};

Result<std::vector<std::string>> StringArray(const json& j, const char* key,
                                             const std::string& what) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Status::InvalidArgument(what + ": " + key + " is not an array");
  for (const json& v : *it) {
    if (!v.is_string()) {
      return Status::InvalidArgument(what + ": " + key + " has an element that is not a string");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> String(const json& j, const char* key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::InvalidArgument(what + ": " + key + " is not a string");
  return it->get<std::string>();
}

Status CheckDigest(const std::string& digest, const std::string& what) {
  if (IsSha256Digest(digest)) return Status::OK();
  if (digest.find(':') != std::string::npos && digest.compare(0, 7, "sha256:") != 0) {
    return Status::NotSupported(what + ": digest algorithm of " + digest +
                                " is not supported (only sha256)");
  }
  return Status::InvalidArgument(what + ": malformed digest \"" + digest + "\"");
}

Result<Descriptor> ParseDescriptor(const json& j, const std::string& what) {
  if (!j.is_object()) return Status::InvalidArgument(what + ": descriptor is not an object");
  Descriptor d;
  PETREL_ASSIGN_OR_RETURN(d.digest, String(j, "digest", what));
  PETREL_RETURN_IF_ERROR(CheckDigest(d.digest, what));
  auto size = j.find("size");
  if (size != j.end()) {
    if (!size->is_number_integer() || size->get<int64_t>() < 0) {
      return Status::InvalidArgument(what + ": size is not a non-negative integer");
    }
    d.size = size->get<int64_t>();
  }
  auto platform = j.find("platform");
  if (platform != j.end() && platform->is_object()) d.platform = &*platform;
  auto annotations = j.find("annotations");
  if (annotations != j.end() && annotations->is_object()) {
    auto name = annotations->find(kRefNameAnnotation);
    if (name != annotations->end() && name->is_string()) d.ref_name = name->get<std::string>();
  }
  return d;
}

std::string BlobName(const std::string& digest) {
  return "blobs/sha256/" + digest.substr(7);  // REQUIRES: IsSha256Digest(digest)
}

// Reads the blob `d` and checks its size and digest.
Result<std::string> ReadBlob(ImageSource* source, const Descriptor& d, const std::string& what) {
  if (d.size > static_cast<int64_t>(kMaxJsonSize)) {
    return Status::InvalidArgument(what + " " + d.digest + ": larger than " +
                                   std::to_string(kMaxJsonSize) + " bytes");
  }
  Result<std::string> data = source->ReadFile(BlobName(d.digest), kMaxJsonSize);
  if (!data.ok()) return data.status().WithContext(what + " " + d.digest);
  if (d.size >= 0 && data->size() != static_cast<uint64_t>(d.size)) {
    return Status::InvalidArgument(what + " " + d.digest + ": size is " +
                                   std::to_string(data->size()) + " bytes, descriptor says " +
                                   std::to_string(d.size));
  }
  std::string actual = Sha256Digest(*data);
  if (actual != d.digest) {
    return Status::InvalidArgument(what + " " + d.digest + ": digest mismatch (content is " +
                                   actual + ")");
  }
  return data;
}

// The CPU variant of this machine as image platforms spell it ("v7" for arm/v7), or "".
constexpr const char* HostVariant() {
#if defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
  return "v7";
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 6
  return "v6";
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 5
  return "v5";
#elif defined(__aarch64__)
  return "v8";
#else
  return "";
#endif
}

// Picks the manifest for this machine from an image index's descriptors: linux, this
// architecture, and the same variant; else (arm) the highest variant below this one,
// which this CPU runs too; else one without a variant. An index of one manifest without
// a platform gives that one.
Result<Descriptor> PickPlatform(const std::vector<Descriptor>& manifests, const std::string& what) {
  const std::string arch = HostArchitecture();
  const std::string variant = HostVariant();
  const Descriptor* best = nullptr;
  std::string best_variant;
  for (const Descriptor& d : manifests) {
    if (d.platform == nullptr) continue;
    auto os = d.platform->find("os");
    auto architecture = d.platform->find("architecture");
    if (os == d.platform->end() || *os != "linux" || architecture == d.platform->end() ||
        *architecture != arch) {
      continue;
    }
    auto v = d.platform->find("variant");
    std::string dv = v != d.platform->end() && v->is_string() ? v->get<std::string>() : "";
    if (dv == variant) return d;
    // "v6" < "v7": variants of one architecture compare as their text does.
    bool runs_here =
        dv.empty() || (!variant.empty() && dv.size() == variant.size() && dv < variant);
    if (runs_here && (best == nullptr || dv > best_variant)) {
      best = &d;
      best_variant = dv;
    }
  }
  if (best != nullptr) return *best;
  if (manifests.size() == 1 && manifests[0].platform == nullptr) return manifests[0];
  return Status::InvalidArgument(what + ": no manifest for linux/" + arch +
                                 (variant.empty() ? "" : "/" + std::string(variant)));
}

Result<std::vector<Descriptor>> ParseManifests(const json& index, const std::string& what) {
  auto it = index.find("manifests");
  if (it == index.end() || !it->is_array()) {
    return Status::InvalidArgument(what + ": manifests is not an array");
  }
  std::vector<Descriptor> out;
  for (const json& j : *it) {
    PETREL_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(j, what));
    out.push_back(std::move(d));
  }
  if (out.empty()) return Status::InvalidArgument(what + ": no manifests");
  return out;
}

}  // namespace

Result<ImageConfig> ParseImageConfig(const std::string& config_json,
                                     std::vector<std::string>* diff_ids) {
  const std::string what = "config";
  PETREL_ASSIGN_OR_RETURN(const json j, ParseJson(config_json, what));
  if (!j.is_object()) return Status::InvalidArgument("config: not an object");
  ImageConfig config;
  auto c = j.find("config");
  if (c != j.end() && !c->is_null()) {
    if (!c->is_object()) return Status::InvalidArgument("config: config is not an object");
    const std::string cwhat = "config: config";
    Result<std::vector<std::string>> entrypoint = StringArray(*c, "Entrypoint", cwhat);
    Result<std::vector<std::string>> cmd = StringArray(*c, "Cmd", cwhat);
    Result<std::vector<std::string>> env = StringArray(*c, "Env", cwhat);
    Result<std::string> working_dir = String(*c, "WorkingDir", cwhat);
    Result<std::string> user = String(*c, "User", cwhat);
    for (const Status& s :
         {entrypoint.status(), cmd.status(), env.status(), working_dir.status(), user.status()}) {
      PETREL_RETURN_IF_ERROR(s);
    }
    config.entrypoint = std::move(*entrypoint);
    config.cmd = std::move(*cmd);
    config.env = std::move(*env);
    config.working_dir = std::move(*working_dir);
    config.user = std::move(*user);
  }
  if (diff_ids != nullptr) {
    auto rootfs = j.find("rootfs");
    if (rootfs == j.end() || !rootfs->is_object()) {
      return Status::InvalidArgument("config: rootfs is missing");
    }
    PETREL_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                            StringArray(*rootfs, "diff_ids", "config: rootfs"));
    for (const std::string& id : ids) {
      PETREL_RETURN_IF_ERROR(CheckDigest(id, "config: rootfs.diff_ids"));
    }
    *diff_ids = std::move(ids);
  }
  return config;
}

Result<ImagePlan> ReadOciLayout(ImageSource* source, const std::string& tag) {
  PETREL_ASSIGN_OR_RETURN(const std::string index_text,
                          source->ReadFile("index.json", kMaxJsonSize));
  PETREL_ASSIGN_OR_RETURN(const json index, ParseJson(index_text, "index.json"));
  PETREL_ASSIGN_OR_RETURN(const std::vector<Descriptor> manifests,
                          ParseManifests(index, "index.json"));

  Descriptor chosen = manifests.front();
  if (!tag.empty()) {
    bool found = false;
    std::string tags;
    for (const Descriptor& d : manifests) {
      if (d.ref_name == tag) {
        chosen = d;
        found = true;
        break;
      }
      if (!d.ref_name.empty()) tags += (tags.empty() ? "" : ", ") + d.ref_name;
    }
    if (!found) {
      return Status::NotFound("no manifest tagged \"" + tag + "\" in index.json" +
                              (tags.empty() ? "" : " (tags: " + tags + ")"));
    }
  }

  // An image index (multi-platform) leads to the manifest for this machine.
  json manifest;
  for (int depth = 0;; depth++) {
    PETREL_ASSIGN_OR_RETURN(const std::string text, ReadBlob(source, chosen, "manifest"));
    const std::string what = "manifest " + chosen.digest;
    PETREL_ASSIGN_OR_RETURN(json j, ParseJson(text, what));
    if (!j.is_object()) return Status::InvalidArgument(what + ": not an object");
    if (!j.contains("manifests")) {
      manifest = std::move(j);
      break;
    }
    if (depth == kMaxIndexDepth) return Status::InvalidArgument(what + ": indexes nested too deep");
    PETREL_ASSIGN_OR_RETURN(const std::vector<Descriptor> inner, ParseManifests(j, what));
    PETREL_ASSIGN_OR_RETURN(chosen, PickPlatform(inner, what));
    chosen.platform = nullptr;  // points into j, which goes away
  }

  const std::string what = "manifest " + chosen.digest;
  auto config_it = manifest.find("config");
  if (config_it == manifest.end()) return Status::InvalidArgument(what + ": no config");
  PETREL_ASSIGN_OR_RETURN(const Descriptor config_desc,
                          ParseDescriptor(*config_it, what + ": config"));
  auto layers_it = manifest.find("layers");
  if (layers_it == manifest.end() || !layers_it->is_array()) {
    return Status::InvalidArgument(what + ": layers is not an array");
  }

  ImagePlan plan;
  PETREL_ASSIGN_OR_RETURN(plan.config_json, ReadBlob(source, config_desc, "config"));
  plan.id = config_desc.digest;
  std::vector<std::string> diff_ids;
  Result<ImageConfig> config = ParseImageConfig(plan.config_json, &diff_ids);
  if (!config.ok()) return config.status().WithContext("config " + plan.id);
  plan.config = std::move(*config);
  if (diff_ids.size() != layers_it->size()) {
    return Status::InvalidArgument(what + ": " + std::to_string(layers_it->size()) +
                                   " layers but the config lists " +
                                   std::to_string(diff_ids.size()) + " diff_ids");
  }
  for (size_t i = 0; i < diff_ids.size(); i++) {
    PETREL_ASSIGN_OR_RETURN(const Descriptor d, ParseDescriptor((*layers_it)[i], what + ": layer"));
    plan.layers.push_back(LayerRef{BlobName(d.digest), d.digest, d.size, diff_ids[i]});
  }
  return plan;
}

Result<ImagePlan> ReadDockerArchive(ImageSource* source) {
  PETREL_ASSIGN_OR_RETURN(const std::string text, source->ReadFile("manifest.json", kMaxJsonSize));
  PETREL_ASSIGN_OR_RETURN(const json j, ParseJson(text, "manifest.json"));
  if (!j.is_array() || j.empty() || !j[0].is_object()) {
    return Status::InvalidArgument("manifest.json: not a list of images");
  }
  const json& image = j[0];
  PETREL_ASSIGN_OR_RETURN(const std::string config_name, String(image, "Config", "manifest.json"));
  if (config_name.empty()) return Status::InvalidArgument("manifest.json: no Config");
  PETREL_ASSIGN_OR_RETURN(const std::vector<std::string> layers,
                          StringArray(image, "Layers", "manifest.json"));

  ImagePlan plan;
  PETREL_ASSIGN_OR_RETURN(plan.config_json, source->ReadFile(config_name, kMaxJsonSize));
  plan.id = Sha256Digest(plan.config_json);
  std::vector<std::string> diff_ids;
  Result<ImageConfig> config = ParseImageConfig(plan.config_json, &diff_ids);
  if (!config.ok()) return config.status().WithContext("config " + config_name);
  plan.config = std::move(*config);
  if (diff_ids.size() != layers.size()) {
    return Status::InvalidArgument("manifest.json: " + std::to_string(layers.size()) +
                                   " layers but the config lists " +
                                   std::to_string(diff_ids.size()) + " diff_ids");
  }
  for (size_t i = 0; i < diff_ids.size(); i++) {
    plan.layers.push_back(LayerRef{layers[i], "", -1, diff_ids[i]});
  }
  return plan;
}

}  // namespace petrel::internal
