#include "lib/image/local_image.h"

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string_view>

#include "lib/image/archive_lib.h"
#include "lib/util/fs.h"

namespace petrel::internal {

namespace {

// "PATH:TAG" -> PATH, TAG when the part after the last ':' has no '/'; else all is PATH.
void SplitTag(const std::string& rest, LocalRef* parsed) {
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && colon > 0 && colon + 1 < rest.size() &&
      rest.find('/', colon) == std::string::npos) {
    parsed->path = rest.substr(0, colon);
    parsed->tag = rest.substr(colon + 1);
  } else {
    parsed->path = rest;
  }
}

}  // namespace

Result<LocalRef> ParseLocalRef(const std::string& ref) {
  constexpr std::string_view kOci = "oci:", kOciArchive = "oci-archive:",
                             kDockerArchive = "docker-archive:";
  const std::string_view r = ref;
  LocalRef parsed;
  if (r.substr(0, kOci.size()) == kOci) {
    parsed.format = LocalFormat::kOciDir;
    SplitTag(ref.substr(kOci.size()), &parsed);
  } else if (r.substr(0, kOciArchive.size()) == kOciArchive) {
    parsed.format = LocalFormat::kOciArchive;
    SplitTag(ref.substr(kOciArchive.size()), &parsed);
  } else if (r.substr(0, kDockerArchive.size()) == kDockerArchive) {
    parsed.format = LocalFormat::kDockerArchive;
    parsed.path = ref.substr(kDockerArchive.size());
  } else {
    return Status::InvalidArgument(
        "unsupported image reference (use oci:DIR[:TAG], oci-archive:FILE[:TAG] or "
        "docker-archive:FILE)");
  }
  if (parsed.path.empty()) return Status::InvalidArgument("no path in the image reference");
  return parsed;
}

Result<struct stat> StatLocalImage(const std::string& ref, const LocalRef& parsed) {
  struct stat st;
  if (stat(parsed.path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Status::NotFound(ref + ": no such file or directory");
    }
    return ErrnoError(parsed.path, "stat", errno).WithContext(ref);
  }
  if (parsed.format == LocalFormat::kOciDir) {
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(ref + ": not a directory");
    const std::string index = parsed.path + "/index.json";
    if (stat(index.c_str(), &st) != 0) {
      if (errno == ENOENT) {
        return Status::InvalidArgument(ref + ": not an OCI image layout (no index.json)");
      }
      return ErrnoError(index, "stat", errno).WithContext(ref);
    }
  } else if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(ref + ": not a regular file");
  }
  return st;
}

std::unique_ptr<ImageSource> OpenLocalImage(const LocalRef& parsed) {
  return parsed.format == LocalFormat::kOciDir ? ImageSource::Dir(parsed.path)
                                               : ImageSource::Tar(parsed.path);
}

Result<ImagePlan> ReadLocalPlan(ImageSource* source, const LocalRef& parsed) {
  return parsed.format == LocalFormat::kDockerArchive ? ReadDockerArchive(source)
                                                      : ReadOciLayout(source, parsed.tag);
}

Result<std::string> ArchiveReference(const std::string& path, std::vector<std::string>* carried) {
  using nlohmann::json;
  ArchiveUse archive;
  if (!archive.status().ok()) return archive.status().WithContext(path);
  std::unique_ptr<ImageSource> source = ImageSource::Tar(path);
  Result<std::string> index = source->ReadFile("index.json", kMaxJsonSize);
  Result<std::string> docker = index.ok() ? Result<std::string>(std::string())
                                          : source->ReadFile("manifest.json", kMaxJsonSize);
  if (!index.ok() && !docker.ok()) {
    if (index.status().code() == Status::Code::kIOError) return index.status().WithContext(path);
    return Status::InvalidArgument(path +
                                   ": neither an OCI archive (no index.json) nor `docker save` "
                                   "output (no manifest.json)");
  }
  json j = json::parse(index.ok() ? *index : *docker, nullptr, /*allow_exceptions=*/false);
  auto text = [](const json& o, const char* key, std::vector<std::string>* out) {
    if (o.is_object() && o.contains(key) && o[key].is_string()) {
      out->push_back(o[key].get<std::string>());
    }
  };
  if (index.ok()) {
    if (j.is_object() && j.contains("manifests") && j["manifests"].is_array() &&
        !j["manifests"].empty() && j["manifests"][0].is_object() &&
        j["manifests"][0].contains("annotations")) {
      const json& a = j["manifests"][0]["annotations"];
      text(a, "io.containerd.image.name", carried);
      std::vector<std::string> ref_name;
      text(a, "org.opencontainers.image.ref.name", &ref_name);
      for (const std::string& n : ref_name) {
        if (n.find_first_of(":/@") != std::string::npos) carried->push_back(n);  // not a bare tag
      }
    }
    return "oci-archive:" + path;
  }
  if (j.is_array() && !j.empty() && j[0].is_object() && j[0].contains("RepoTags") &&
      j[0]["RepoTags"].is_array()) {
    for (const json& t : j[0]["RepoTags"]) {
      if (t.is_string()) carried->push_back(t.get<std::string>());
    }
  }
  return "docker-archive:" + path;
}

}  // namespace petrel::internal
