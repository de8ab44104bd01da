// ParseManifest and LoadManifests: the three stages of decode.h, plus error
// positions, duplicate names and file handling.
#include "petrel/manifest.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "lib/manifest/decode.h"
#include "lib/spec/check.h"
#include "lib/util/fs.h"
#include "lib/util/strings.h"

namespace petrel {
namespace {

using internal::ManifestError;
using internal::Position;

// Bigger manifests are mistakes (or attacks); refusing them bounds memory and time.
constexpr size_t kMaxManifestBytes = 4 << 20;

struct Located {
  WorkloadSpec spec;
  Position name_pos;  // where metadata.name is written
};

std::string Where(std::string_view file, Position pos) {
  return std::string(file) + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
}

// "file:line:col: path: reason", or "file:line:col: reason" without a path.
Status ErrorAt(std::string_view file, const ManifestError& e) {
  std::string msg = Where(file, e.pos) + ": ";
  if (!e.path.empty()) msg += e.path + ": ";
  msg += e.reason;
  return Status::InvalidArgument(msg);
}

// A manifest read from a file may name a local image relative to that file's
// directory (as Compose does for build contexts); it becomes absolute here, so the
// stored spec does not depend on the working directory of whoever applied it.
void ResolveImagePath(const std::string& base_dir, WorkloadSpec* spec) {
  for (std::string_view transport : internal::kPathTransports) {
    std::string_view image = spec->image;
    if (image.substr(0, transport.size()) != transport) continue;
    std::string_view rest = image.substr(transport.size());
    if (rest.empty() || rest.front() == '/') return;
    std::filesystem::path abs = std::filesystem::absolute(base_dir) / std::string(rest);
    spec->image = std::string(transport) + abs.lexically_normal().string();
    return;
  }
}

// Parses, decodes and checks every workload of one file, all or nothing. With a
// base_dir, relative local image paths are taken from there; bind mounts' sources are
// checked against `allowed_host_paths` (none: any).
Status ParseFile(std::string_view text, std::string_view file, std::vector<Located>* out,
                 const std::string& base_dir = "",
                 const std::vector<std::string>& allowed_host_paths = {}) {
  if (text.size() > kMaxManifestBytes) {
    return ErrorAt(file, {Position{}, "", "larger than 4 MiB"});
  }
  std::vector<YAML::Node> docs;
  if (auto e = internal::ParseDocuments(text, &docs)) return ErrorAt(file, *e);
  std::map<std::string, Position> first_at;
  std::vector<Located> result;
  for (const YAML::Node& doc : docs) {
    Located w;
    internal::PositionMap positions;
    if (auto e = internal::DecodeWorkload(doc, &w.spec, &positions)) return ErrorAt(file, *e);
    if (!base_dir.empty()) ResolveImagePath(base_dir, &w.spec);
    std::optional<internal::FieldError> f = internal::CheckWorkload(w.spec);
    if (!f) f = internal::CheckHostPaths(w.spec, allowed_host_paths);
    if (f) return ErrorAt(file, {internal::Locate(positions, f->path), f->path, f->reason});
    w.name_pos = internal::Locate(positions, "metadata.name");
    auto [it, inserted] = first_at.emplace(w.spec.name, w.name_pos);
    if (!inserted) {
      return ErrorAt(file, {w.name_pos, "metadata.name",
                            "duplicate workload name " + internal::Quote(w.spec.name) +
                                " (first at line " + std::to_string(it->second.line) + ")"});
    }
    result.push_back(std::move(w));
  }
  *out = std::move(result);
  return Status::OK();
}

// Reads at most kMaxManifestBytes + 1 bytes: enough for ParseFile to refuse a bigger file.
Status ReadFile(const std::string& path, std::string* text) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return internal::ErrnoError(path, "", errno);
  text->clear();
  char buf[16384];
  size_t n;
  while (text->size() <= kMaxManifestBytes && (n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    text->append(buf, n);
  }
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) return internal::ErrnoError(path, "", err);
  return Status::OK();
}

// The manifest files of `path`: itself, or a directory's *.yaml, *.yml and *.json
// (not hidden ones) in name order.
Status ListFiles(const std::string& path, std::vector<std::string>* files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return Status::NotFound(path + ": " + (ec ? ec.message() : "no such file or directory"));
  }
  if (!fs::is_directory(st)) {
    files->push_back(path);
    return Status::OK();
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::string ext = it->path().extension().string();
    std::error_code type_ec;
    if (name[0] == '.' || !it->is_regular_file(type_ec)) continue;
    if (ext == ".yaml" || ext == ".yml" || ext == ".json") names.push_back(name);
  }
  if (ec) return Status::IOError(path + ": " + ec.message());
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) files->push_back((fs::path(path) / name).string());
  return Status::OK();
}

Result<std::vector<WorkloadSpec>> LoadAll(const std::string& path,
                                          const std::vector<std::string>& allowed_host_paths) {
  std::vector<std::string> files;
  PETREL_RETURN_IF_ERROR(ListFiles(path, &files));
  std::vector<WorkloadSpec> specs;
  std::map<std::string, std::string> defined_at;  // workload name -> "file:line:col"
  for (const std::string& file : files) {
    std::string text;
    PETREL_RETURN_IF_ERROR(ReadFile(file, &text));
    std::vector<Located> workloads;
    std::string dir = std::filesystem::path(file).parent_path().string();
    PETREL_RETURN_IF_ERROR(
        ParseFile(text, file, &workloads, dir.empty() ? "." : dir, allowed_host_paths));
    for (Located& w : workloads) {
      auto [it, inserted] = defined_at.emplace(w.spec.name, Where(file, w.name_pos));
      if (!inserted) {
        return ErrorAt(file, {w.name_pos, "metadata.name",
                              "duplicate workload name " + internal::Quote(w.spec.name) +
                                  " (first in " + it->second + ")"});
      }
      specs.push_back(std::move(w.spec));
    }
  }
  return specs;
}

}  // namespace

Result<std::vector<WorkloadSpec>> ParseManifest(std::string_view text, std::string_view filename) {
  try {
    std::vector<Located> workloads;
    PETREL_RETURN_IF_ERROR(ParseFile(text, filename, &workloads));
    std::vector<WorkloadSpec> specs;
    specs.reserve(workloads.size());
    for (Located& w : workloads) specs.push_back(std::move(w.spec));
    return specs;
  } catch (const std::exception& e) {
    return Status::Internal(std::string(filename) + ": " + e.what());
  }
}

Result<std::vector<WorkloadSpec>> LoadManifests(const std::string& path) {
  return LoadManifests(path, {});
}

Result<std::vector<WorkloadSpec>> LoadManifests(
    const std::string& path, const std::vector<std::string>& allowed_host_paths) {
  try {
    return LoadAll(path, allowed_host_paths);
  } catch (const std::exception& e) {
    return Status::Internal(path + ": " + e.what());
  }
}

}  // namespace petrel
