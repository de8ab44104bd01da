#include "lib/image/image_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lib/image/digest.h"
#include "lib/image/libcrypto_sha256.h"
#include "lib/image/registry.h"
#include "tests/lib/files.h"
#include "tests/lib/mounts.h"

namespace petrel::internal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using petrel::testing::Damaged;
using petrel::testing::kDamages;
using petrel::testing::Mounted;
using petrel::testing::MountGuard;
using petrel::testing::ReadFile;
using petrel::testing::TempDir;
using petrel::testing::WriteFile;

// ---- Building images with libarchive, so every byte of every entry is the test's.

struct TarEntry {
  std::string path;
  char type = 'f';   // f file, d directory, l symlink, h hard link, c / b device, p FIFO
  std::string data;  // a file's contents, or a link's target
  int mode = -1;     // -1: 0644 for files, 0755 for directories, 0777 for symlinks
  int uid = 0, gid = 0;
  std::map<std::string, std::string> xattrs;
};

TarEntry File(const std::string& path, const std::string& data, int mode = 0644) {
  return TarEntry{path, 'f', data, mode, 0, 0, {}};
}
TarEntry Dir(const std::string& path, int mode = 0755) {
  return TarEntry{path, 'd', "", mode, 0, 0, {}};
}
TarEntry Symlink(const std::string& path, const std::string& target) {
  return TarEntry{path, 'l', target, 0777, 0, 0, {}};
}
TarEntry Hardlink(const std::string& path, const std::string& target) {
  return TarEntry{path, 'h', target, 0644, 0, 0, {}};
}

la_ssize_t Append(struct archive*, void* out, const void* buf, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), size);
  return static_cast<la_ssize_t>(size);
}

std::string MakeTar(const std::vector<TarEntry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open(a, &out, nullptr, Append, nullptr) == ARCHIVE_OK);
  for (const TarEntry& t : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, 1000000000, 0);
    int mode = t.mode;
    switch (t.type) {
      case 'f': archive_entry_set_filetype(e, AE_IFREG); break;
      case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
      case 'l':
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.data.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.data.c_str());
        break;
      case 'c':
      case 'b':
        archive_entry_set_filetype(e, t.type == 'c' ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, 1);
        archive_entry_set_rdevminor(e, 3);
        break;
      case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
    }
    if (mode < 0) mode = t.type == 'd' ? 0755 : t.type == 'l' ? 0777 : 0644;
    archive_entry_set_perm(e, static_cast<mode_t>(mode));
    if (t.type == 'f') archive_entry_set_size(e, static_cast<la_int64_t>(t.data.size()));
    for (const auto& [name, value] : t.xattrs) {
      archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
    }
    REQUIRE_MESSAGE(archive_write_header(a, e) == ARCHIVE_OK, archive_error_string(a));
    if (t.type == 'f' && !t.data.empty()) {
      REQUIRE(archive_write_data(a, t.data.data(), t.data.size()) ==
              static_cast<la_ssize_t>(t.data.size()));
    }
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// `data` through libarchive's `filter` ("gzip", "zstd").
std::string Compress(const std::string& data, const char* filter) {
  std::string out;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_raw(a) == ARCHIVE_OK);
  REQUIRE(archive_write_add_filter_by_name(a, filter) == ARCHIVE_OK);
  REQUIRE(archive_write_set_bytes_in_last_block(a, 1) == ARCHIVE_OK);  // no zero padding
  REQUIRE(archive_write_open(a, &out, nullptr, Append, nullptr) == ARCHIVE_OK);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
  REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
  archive_entry_free(e);
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

struct Layer {
  std::string blob;     // as stored
  std::string diff_id;  // of the uncompressed tar
  std::string media_type = "application/vnd.oci.image.layer.v1.tar";
  std::string Digest() const { return Sha256Digest(blob); }
};

Layer MakeLayer(const std::vector<TarEntry>& entries, const char* filter = nullptr) {
  Layer layer;
  layer.blob = MakeTar(entries);
  layer.diff_id = Sha256Digest(layer.blob);
  if (filter != nullptr) {
    layer.blob = Compress(layer.blob, filter);
    layer.media_type += std::string("+") + filter;
  }
  return layer;
}

json RunConfig() {
  return json{{"Entrypoint", {"/bin/tool"}},
              {"Cmd", {"--flag"}},
              {"Env", {"PATH=/bin", "A=b"}},
              {"WorkingDir", "/work"},
              {"User", "1000:1000"}};
}

std::string ConfigJson(const std::vector<Layer>& layers, const json& config = RunConfig()) {
  json diff_ids = json::array();
  for (const Layer& l : layers) diff_ids.push_back(l.diff_id);
  return json{{"architecture", "amd64"},
              {"os", "linux"},
              {"config", config},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
      .dump();
}

using Files = std::map<std::string, std::string>;  // name in the layout -> contents

json Descriptor(const std::string& media_type, const std::string& blob) {
  return json{{"mediaType", media_type}, {"digest", Sha256Digest(blob)}, {"size", blob.size()}};
}

std::string ManifestJson(const std::vector<Layer>& layers, const std::string& config) {
  json descs = json::array();
  for (const Layer& l : layers) descs.push_back(Descriptor(l.media_type, l.blob));
  return json{{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", Descriptor("application/vnd.oci.image.config.v1+json", config)},
              {"layers", descs}}
      .dump();
}

void AddBlob(Files* files, const std::string& blob) {
  (*files)["blobs/sha256/" + Sha256Digest(blob).substr(7)] = blob;
}

// An OCI layout of one image tagged `tag`.
Files OciLayout(const std::vector<Layer>& layers, const std::string& config,
                const std::string& tag = "latest") {
  Files files;
  files["oci-layout"] = R"({"imageLayoutVersion":"1.0.0"})";
  for (const Layer& l : layers) AddBlob(&files, l.blob);
  AddBlob(&files, config);
  const std::string manifest = ManifestJson(layers, config);
  AddBlob(&files, manifest);
  json desc = Descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
  desc["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
  files["index.json"] = json{{"schemaVersion", 2}, {"manifests", {desc}}}.dump();
  return files;
}

// `docker save` output of one image.
Files DockerLayout(const std::vector<Layer>& layers, const std::string& config) {
  Files files;
  const std::string config_name = Sha256Digest(config).substr(7) + ".json";
  files[config_name] = config;
  json names = json::array();
  for (const Layer& l : layers) {
    const std::string name = l.diff_id.substr(7) + "/layer.tar";
    files[name] = l.blob;
    names.push_back(name);
  }
  files["manifest.json"] =
      json::array({{{"Config", config_name}, {"RepoTags", {"test:latest"}}, {"Layers", names}}})
          .dump();
  return files;
}

void WriteDir(const Files& files, const std::string& dir) {
  for (const auto& [name, data] : files) WriteFile(dir + "/" + name, data);
}

void WriteTar(const Files& files, const std::string& path) {
  std::vector<TarEntry> entries;
  for (const auto& [name, data] : files) entries.push_back(File(name, data));
  WriteFile(path, MakeTar(entries));
}

// Writes the image as `format` below `dir` and returns its reference.
std::string WriteImage(const std::string& dir, const std::string& format,
                       const std::vector<Layer>& layers, const std::string& config) {
  if (format == "oci") {
    WriteDir(OciLayout(layers, config), dir + "/image-oci");
    return "oci:" + dir + "/image-oci";
  }
  if (format == "oci-archive") {
    WriteTar(OciLayout(layers, config), dir + "/image.tar");
    return "oci-archive:" + dir + "/image.tar";
  }
  WriteTar(DockerLayout(layers, config), dir + "/docker.tar");
  return "docker-archive:" + dir + "/docker.tar";
}

std::unique_ptr<ImageStore> OpenStore(const std::string& dir, bool allow_overlay = true) {
  ImageStoreOptions options;
  options.dir = dir;
  options.allow_overlay = allow_overlay;
  Result<std::unique_ptr<ImageStore>> store = ImageStore::Open(options);
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(*store);
}

Image MustPull(ImageStore* store, const std::string& ref) {
  Result<Image> image = store->Pull(ref);
  REQUIRE_MESSAGE(image.ok(), image.status().ToString());
  return *image;
}

struct stat Lstat(const std::string& path) {
  struct stat st = {};
  REQUIRE_MESSAGE(lstat(path.c_str(), &st) == 0, path);
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// The layer most tests use: every kind of entry the store keeps.
std::vector<TarEntry> BaseEntries() {
  TarEntry tool = File("bin/tool", "#!/bin/sh\necho tool\n", 04755);
  tool.uid = 1000;
  tool.gid = 1001;
  TarEntry tagged = File("etc/tagged", "x");
  tagged.xattrs["user.petrel"] = "yes";
  tagged.xattrs["trusted.overlay.opaque"] = "y";  // never applied
  return {Dir("."),
          Dir("bin"),
          tool,
          Symlink("bin/link", "tool"),
          Hardlink("bin/hard", "bin/tool"),
          Dir("etc"),
          File("etc/hello", "hello\n"),
          tagged,
          Dir("tmp", 01777),
          TarEntry{"run/fifo", 'p', "", 0640, 0, 0, {}},
          File("deep/a/b/c/file", "deep")};
}

void CheckBaseRootfs(const std::string& rootfs) {
  CHECK(ReadFile(rootfs + "/etc/hello") == "hello\n");
  struct stat tool = Lstat(rootfs + "/bin/tool");
  CHECK((tool.st_mode & 07777) == 04755);
  if (geteuid() == 0) {
    CHECK(tool.st_uid == 1000);
    CHECK(tool.st_gid == 1001);
  }
  CHECK(tool.st_mtime == 1000000000);
  CHECK(S_ISLNK(Lstat(rootfs + "/bin/link").st_mode));
  CHECK(fs::read_symlink(rootfs + "/bin/link") == "tool");
  CHECK(Lstat(rootfs + "/bin/hard").st_ino == tool.st_ino);
  CHECK((Lstat(rootfs + "/tmp").st_mode & 07777) == 01777);
  struct stat fifo = Lstat(rootfs + "/run/fifo");
  CHECK(S_ISFIFO(fifo.st_mode));
  CHECK((fifo.st_mode & 07777) == 0640);
  CHECK(ReadFile(rootfs + "/deep/a/b/c/file") == "deep");
  CHECK((Lstat(rootfs + "/deep/a").st_mode & 07777) == 0755);  // implied directories
  char value[16] = {};
  CHECK(lgetxattr((rootfs + "/etc/tagged").c_str(), "user.petrel", value, sizeof(value)) == 3);
  CHECK(std::string(value) == "yes");
  CHECK(lgetxattr((rootfs + "/etc/tagged").c_str(), "trusted.overlay.opaque", value,
                  sizeof(value)) < 0);
}

TEST_SUITE("image_store") {
  TEST_CASE("oci dir, oci-archive and docker-archive import the same image") {
    for (const std::string format : {"oci", "oci-archive", "docker-archive"}) {
      CAPTURE(format);
      TempDir dir;
      std::vector<Layer> layers = {MakeLayer(BaseEntries())};
      const std::string config = ConfigJson(layers);
      const std::string ref = WriteImage(dir.path(), format, layers, config);
      auto store = OpenStore(dir.Sub("store"));
      Image image = MustPull(store.get(), ref);
      CHECK(image.id == Sha256Digest(config));
      CHECK(image.rootfs == dir.Sub("store") + "/" + image.id.substr(7) + "/rootfs");
      CHECK(image.config.entrypoint == std::vector<std::string>{"/bin/tool"});
      CHECK(image.config.cmd == std::vector<std::string>{"--flag"});
      CHECK(image.config.env == std::vector<std::string>{"PATH=/bin", "A=b"});
      CHECK(image.config.working_dir == "/work");
      CHECK(image.config.user == "1000:1000");
      CheckBaseRootfs(image.rootfs);
      CHECK((Lstat(dir.Sub("store")).st_mode & 07777) == 0700);
      CHECK(store->unpack_count() == 1);
    }
  }

  TEST_CASE("libcrypto's SHA-256, once libcrypto is loaded, gives mbedTLS's digests") {
    // What a registry pull's libcurl does: libcrypto comes into the process.
    void* crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(crypto != nullptr, dlerror());
    const Sha256Engine* engine = LoadedLibcryptoSha256();
    REQUIRE(engine != nullptr);
    CHECK(LoadedLibcryptoSha256() == engine);
    std::string data(3 * 65536 + 17, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 131 + (i >> 9));
    for (size_t split :
         {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{65536}, data.size()}) {
      Sha256 fast(engine), slow;
      fast.Update(data.substr(0, split));
      fast.Update(data.substr(split));
      slow.Update(data.substr(0, split));
      slow.Update(data.substr(split));
      CHECK(fast.HexDigest() == slow.HexDigest());
    }
    const std::string kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    Sha256 abc(engine);
    abc.Update("abc");
    CHECK(abc.HexDigest() == kAbc);
    Sha256 none(engine);  // destroyed without a digest: its context is freed all the same
    none.Update(data);
    dlclose(crypto);  // LoadedLibcryptoSha256 keeps its own handle
    Sha256 after(engine);
    after.Update("abc");
    CHECK(after.HexDigest() == kAbc);
  }

  TEST_CASE("downloads at once outside 1..16 are refused when the store opens") {
    TempDir dir;
    for (int bad : {0, -1, RegistryAccess::kMaxDownloadsLimit + 1}) {
      ImageStoreOptions options;
      options.dir = dir.path() + "/store";
      options.registry.max_downloads = bad;
      Result<std::unique_ptr<ImageStore>> store = ImageStore::Open(options);
      REQUIRE_FALSE(store.ok());
      CHECK(store.status().message() ==
            "image store: downloads at once must be 1..16, not " + std::to_string(bad));
    }
    ImageStoreOptions options;
    options.dir = dir.path() + "/store";
    options.registry.max_downloads = RegistryAccess::kMaxDownloadsLimit;
    CHECK(ImageStore::Open(options).ok());
  }

  TEST_CASE("a config without config, Entrypoint or Cmd gives empty fields") {
    TempDir dir;
    std::vector<Layer> layers = {MakeLayer({File("f", "x")})};
    const std::string config = ConfigJson(layers, nullptr);
    auto store = OpenStore(dir.Sub("store"));
    Image image = MustPull(store.get(), WriteImage(dir.path(), "oci", layers, config));
    CHECK(image.config.entrypoint.empty());
    CHECK(image.config.cmd.empty());
    CHECK(image.config.env.empty());
    CHECK(image.config.working_dir.empty());
  }

  TEST_CASE("tags pick the manifest, an unknown tag is NotFound listing the tags") {
    TempDir dir;
    std::vector<Layer> a = {MakeLayer({File("which", "a")})};
    std::vector<Layer> b = {MakeLayer({File("which", "b")})};
    Files files = OciLayout(a, ConfigJson(a), "a");
    Files fb = OciLayout(b, ConfigJson(b), "b");
    json index = json::parse(files["index.json"]);
    index["manifests"].push_back(json::parse(fb["index.json"])["manifests"][0]);
    fb.erase("index.json");
    files.insert(fb.begin(), fb.end());
    files["index.json"] = index.dump();
    WriteDir(files, dir.Sub("layout"));
    WriteTar(files, dir.Sub("layout.tar"));
    auto store = OpenStore(dir.Sub("store"));
    CHECK(ReadFile(MustPull(store.get(), "oci:" + dir.Sub("layout")).rootfs + "/which") == "a");
    CHECK(ReadFile(MustPull(store.get(), "oci:" + dir.Sub("layout") + ":b").rootfs + "/which") ==
          "b");
    CHECK(ReadFile(MustPull(store.get(), "oci-archive:" + dir.Sub("layout.tar") + ":b").rootfs +
                   "/which") == "b");
    Result<Image> missing = store->Pull("oci:" + dir.Sub("layout") + ":c");
    CHECK(missing.status().IsNotFound());
    CHECK(missing.status().message() ==
          "oci:" + dir.Sub("layout") + ":c: no manifest tagged \"c\" in index.json (tags: a, b)");
  }

  TEST_CASE("an image index resolves to this machine's platform") {
#if defined(__x86_64__)
    const std::string host = "amd64", other = "arm64";
#else
    const std::string host = "arm64", other = "amd64";
#endif
    TempDir dir;
    std::vector<Layer> mine = {MakeLayer({File("arch", host)})};
    std::vector<Layer> theirs = {MakeLayer({File("arch", other)})};
    Files files = OciLayout(theirs, ConfigJson(theirs));
    Files f2 = OciLayout(mine, ConfigJson(mine));
    f2.erase("index.json");
    files.insert(f2.begin(), f2.end());
    json other_desc = Descriptor("application/vnd.oci.image.manifest.v1+json",
                                 ManifestJson(theirs, ConfigJson(theirs)));
    other_desc["platform"] = {{"os", "linux"}, {"architecture", other}};
    json host_desc = Descriptor("application/vnd.oci.image.manifest.v1+json",
                                ManifestJson(mine, ConfigJson(mine)));
    host_desc["platform"] = {{"os", "linux"}, {"architecture", host}};
    const std::string image_index =
        json{{"schemaVersion", 2}, {"manifests", {other_desc, host_desc}}}.dump();
    AddBlob(&files, image_index);
    files["index.json"] =
        json{{"schemaVersion", 2},
             {"manifests", {Descriptor("application/vnd.oci.image.index.v1+json", image_index)}}}
            .dump();
    WriteDir(files, dir.Sub("layout"));
    auto store = OpenStore(dir.Sub("store"));
    CHECK(ReadFile(MustPull(store.get(), "oci:" + dir.Sub("layout")).rootfs + "/arch") == host);
  }

  TEST_CASE("whiteouts and opaque directories across two layers") {
    for (const std::string format : {"oci-archive", "docker-archive"}) {
      CAPTURE(format);
      TempDir dir;
      Layer lower = MakeLayer({Dir("a"), File("a/keep", "1"), File("a/gone", "2"), Dir("a/gonedir"),
                               File("a/gonedir/f", "3"), Dir("b"), File("b/x", "4"), Dir("b/sub"),
                               File("b/sub/y", "5"), Dir("c"), File("c/old", "6"), Dir("d"),
                               Dir("d/sub"), File("d/sub/old", "7"), File("d/other", "8"),
                               File("e", "file in lower"), Dir("g"), File("g/x", "13")});
      Layer upper = MakeLayer({
          File("a/.wh.gone", ""), File("a/.wh.gonedir", ""),
          // This layer's own entries before the opaque marker survive it.
          File("b/new", "9"), File("b/.wh..wh..opq", ""), Dir("c"), File("c/.wh..wh..opq", ""),
          File("c/after", "10"),
          // d is opaque: d/sub stays because this layer writes into it, but only with
          // what this layer put there.
          File("d/sub/new", "11"), File("d/.wh..wh..opq", ""),
          Dir("e"),  // a directory replaces the lower file
          File("e/inside", "12"), File(".wh.nonexistent", ""),
          File("g", "a file replaces the lower directory"),
          Hardlink("linked", "a/keep"),  // to a lower layer's file
      });
      std::vector<Layer> layers = {lower, upper};
      auto store = OpenStore(dir.Sub("store"));
      Image image =
          MustPull(store.get(), WriteImage(dir.path(), format, layers, ConfigJson(layers)));
      const std::string r = image.rootfs;
      CHECK(Exists(r + "/a/keep"));
      CHECK(!Exists(r + "/a/gone"));
      CHECK(!Exists(r + "/a/gonedir"));
      CHECK(Listing(r + "/b") == std::set<std::string>{"new"});
      CHECK(Listing(r + "/c") == std::set<std::string>{"after"});
      CHECK(Listing(r + "/d") == std::set<std::string>{"sub"});
      CHECK(Listing(r + "/d/sub") == std::set<std::string>{"new"});
      CHECK(ReadFile(r + "/e/inside") == "12");
      CHECK(ReadFile(r + "/g") == "a file replaces the lower directory");
      CHECK(Lstat(r + "/linked").st_ino == Lstat(r + "/a/keep").st_ino);
      // No whiteout file is ever written.
      for (const auto& e : fs::recursive_directory_iterator(r)) {
        CHECK(e.path().filename().string().rfind(".wh.", 0) == std::string::npos);
      }
    }
  }

  TEST_CASE("gzip and zstd layers") {
    TempDir dir;
    std::vector<Layer> layers = {MakeLayer(BaseEntries(), "gzip"),
                                 MakeLayer({File("etc/zstd", "z")}, "zstd")};
    auto store = OpenStore(dir.Sub("store"));
    Image image =
        MustPull(store.get(), WriteImage(dir.path(), "oci-archive", layers, ConfigJson(layers)));
    CheckBaseRootfs(image.rootfs);
    CHECK(ReadFile(image.rootfs + "/etc/zstd") == "z");
    // docker-archive layers are checked against diff_ids after decompression too.
    TempDir dir2;
    auto store2 = OpenStore(dir2.Sub("store"));
    CheckBaseRootfs(MustPull(store2.get(),
                             WriteImage(dir2.path(), "docker-archive", layers, ConfigJson(layers)))
                        .rootfs);
  }

  TEST_CASE("empty layers: an empty tar, a gzip of one, zero bytes") {
    TempDir dir;
    Layer zero;
    zero.diff_id = Sha256Digest("");
    std::vector<Layer> layers = {MakeLayer({File("f", "x")}), MakeLayer({}), MakeLayer({}, "gzip"),
                                 zero};
    for (const std::string format : {"oci-archive", "docker-archive"}) {
      CAPTURE(format);
      TempDir store_dir;
      auto store = OpenStore(store_dir.Sub("store"));
      Image image =
          MustPull(store.get(), WriteImage(dir.path(), format, layers, ConfigJson(layers)));
      CHECK(Listing(image.rootfs) == std::set<std::string>{"f"});
    }
  }

  TEST_CASE("blobs that do not match their digests are refused and leave nothing") {
    TempDir dir;
    auto store = OpenStore(dir.Sub("store"));
    const std::set<std::string> before = Listing(dir.Sub("store"));
    std::vector<Layer> layers = {MakeLayer({File("etc/hello", "HELLO-DATA")})};
    const std::string config = ConfigJson(layers);

    // A damaged tar header fails the tar reader first; the digest still has the last word.
    for (const std::string what : {"HELLO-DATA", "etc/hello"}) {
      CAPTURE(what);
      Files files = OciLayout(layers, config);
      std::string& blob = files["blobs/sha256/" + layers[0].Digest().substr(7)];
      blob[blob.find(what)] = 'j';  // same size
      WriteDir(files, dir.Sub("layout"));
      Result<Image> image = store->Pull("oci:" + dir.Sub("layout"));
      CHECK(image.status().IsInvalidArgument());
      CHECK(image.status().message() == "oci:" + dir.Sub("layout") + ": layer " +
                                            layers[0].Digest() + ": digest mismatch (content is " +
                                            Sha256Digest(blob) + ")");
    }
    SUBCASE("a layer blob that is not compressed like its name says") {
      Files files = OciLayout(layers, config);
      files["blobs/sha256/" + layers[0].Digest().substr(7)] = std::string(100, 'x');
      WriteDir(files, dir.Sub("layout"));
      Result<Image> image = store->Pull("oci:" + dir.Sub("layout"));
      CHECK(image.status().IsInvalidArgument());
    }
    SUBCASE("a config blob changed") {
      Files files = OciLayout(layers, config);
      files["blobs/sha256/" + Sha256Digest(config).substr(7)][0] = ' ';
      WriteTar(files, dir.Sub("image.tar"));
      Result<Image> image = store->Pull("oci-archive:" + dir.Sub("image.tar"));
      CHECK(image.status().IsInvalidArgument());
      CHECK(image.status().message().find(": config " + Sha256Digest(config) +
                                          ": digest mismatch") != std::string::npos);
    }
    SUBCASE("a docker-archive layer that is not what the config's diff_id says") {
      Layer other = MakeLayer({File("etc/hello", "jello")});
      std::vector<Layer> lying = {other};
      lying[0].diff_id = layers[0].diff_id;
      WriteTar(DockerLayout(lying, config), dir.Sub("docker.tar"));
      Result<Image> image = store->Pull("docker-archive:" + dir.Sub("docker.tar"));
      CHECK(image.status().IsInvalidArgument());
      CHECK(image.status().message() == "docker-archive:" + dir.Sub("docker.tar") + ": layer " +
                                            layers[0].diff_id + ": uncompressed content is " +
                                            other.diff_id + ", the config says " +
                                            layers[0].diff_id);
    }
    SUBCASE("a digest that is not sha256") {
      Files files = OciLayout(layers, config);
      json index = json::parse(files["index.json"]);
      index["manifests"][0]["digest"] = "sha512:abcd";
      files["index.json"] = index.dump();
      WriteDir(files, dir.Sub("layout"));
      Result<Image> image = store->Pull("oci:" + dir.Sub("layout"));
      CHECK(image.status().code() == Status::Code::kNotSupported);
    }
    SUBCASE("a digest that tries to name another file") {
      Files files = OciLayout(layers, config);
      json index = json::parse(files["index.json"]);
      index["manifests"][0]["digest"] = "sha256:../../../etc/passwd";
      files["index.json"] = index.dump();
      WriteDir(files, dir.Sub("layout"));
      Result<Image> image = store->Pull("oci:" + dir.Sub("layout"));
      CHECK(image.status().IsInvalidArgument());
      CHECK(image.status().message().find("malformed digest") != std::string::npos);
    }
    CHECK(Listing(dir.Sub("store")) == before);
    CHECK(store->unpack_count() == 0);
  }

  TEST_CASE("a layer that decompresses past max_layer_bytes is refused: a decompression bomb") {
    TempDir dir;
    // 16 MiB of zeros: some 16 KiB as gzip, less as zstd.
    const std::string zeros(16 << 20, '\0');
    for (const char* filter : {"gzip", "zstd"}) {
      CAPTURE(filter);
      std::vector<Layer> layers = {MakeLayer({File("zeros", zeros)}, filter)};
      CHECK(layers[0].blob.size() < (64u << 10));
      const std::string ref = WriteImage(dir.path(), "oci", layers, ConfigJson(layers));
      ImageStoreOptions options;
      options.dir = dir.Sub(std::string("small-") + filter);
      options.max_layer_bytes = 1 << 20;
      Result<std::unique_ptr<ImageStore>> store = ImageStore::Open(options);
      REQUIRE(store.ok());
      Result<Image> image = (*store)->Pull(ref);
      CHECK(image.status().IsInvalidArgument());
      CHECK_MESSAGE(image.status().message().find("larger than 1048576 bytes uncompressed") !=
                        std::string::npos,
                    image.status().message());
      // The default limit (4 GiB) takes it.
      auto roomy = OpenStore(dir.Sub(std::string("roomy-") + filter));
      CHECK(fs::file_size(MustPull(roomy.get(), ref).rootfs + "/zeros") == zeros.size());
    }
    // A sparse file claims its size in the header alone.
    TarEntry sparse = File("sparse", "x");
    std::vector<Layer> layers = {MakeLayer({sparse})};
    std::string& tar = layers[0].blob;
    // The header's size field (octal, offset 124) of an entry of 1 byte, made 2 MiB: the
    // data block is short, so libarchive refuses the truncated tar, or the size does.
    tar.replace(124, 11, "00010000000");
    unsigned sum = 0;
    tar.replace(148, 8, "        ");
    for (size_t i = 0; i < 512; i++) sum += static_cast<unsigned char>(tar[i]);
    char field[8];
    std::snprintf(field, sizeof(field), "%06o", sum);
    tar.replace(148, 7, std::string(field, 6) + '\0');
    layers[0].diff_id = Sha256Digest(tar);
    ImageStoreOptions options;
    options.dir = dir.Sub("sparse");
    options.max_layer_bytes = 1 << 20;
    Result<std::unique_ptr<ImageStore>> store = ImageStore::Open(options);
    REQUIRE(store.ok());
    Result<Image> image =
        (*store)->Pull(WriteImage(dir.Sub("s"), "oci", layers, ConfigJson(layers)));
    CHECK(image.status().IsInvalidArgument());
  }

  TEST_CASE("a FIFO or a device in an oci: directory is refused, never opened") {
    TempDir dir;
    std::vector<Layer> layers = {MakeLayer({File("f", "x")})};
    const std::string ref = WriteImage(dir.path(), "oci", layers, ConfigJson(layers));
    const std::string blob = dir.Sub("image-oci/blobs/sha256/" + layers[0].Digest().substr(7));
    fs::remove(blob);
    REQUIRE(mkfifo(blob.c_str(), 0600) == 0);
    // Without the check, Pull blocks in open() until a writer comes: one comes after 5 s,
    // which the check below catches, so a regression fails instead of hanging.
    std::atomic<bool> done{false}, unblocked{false};
    std::thread writer([&] {
      for (int i = 0; i < 500 && !done; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (done) return;
      unblocked = true;
      int fd = open(blob.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) close(fd);
    });
    auto store = OpenStore(dir.Sub("store"));
    Result<Image> image = store->Pull(ref);
    done = true;
    writer.join();
    CHECK(!unblocked);
    CHECK(image.status().IsInvalidArgument());
    CHECK_MESSAGE(image.status().message().find(blob + ": not a regular file") != std::string::npos,
                  image.status().message());
    // A device behind a link is not opened either.
    fs::remove(blob);
    fs::create_symlink("/dev/zero", blob);
    image = store->Pull(ref);
    CHECK(image.status().IsInvalidArgument());
    CHECK(image.status().message().find(blob + ": not a regular file") != std::string::npos);
  }

  TEST_CASE("an image index: the variant of this machine, and no image for another one") {
#if defined(__x86_64__)
    const std::string host = "amd64";
#else
    const std::string host = "arm64";
#endif
    // Each platform's image holds /arch naming it; the index lists `platforms` in order.
    auto layout = [&](const std::string& path, const std::vector<json>& platforms) {
      Files files;
      std::vector<json> descs;
      for (const json& platform : platforms) {
        std::vector<Layer> layers = {MakeLayer({File("arch", platform.dump())})};
        Files f = OciLayout(layers, ConfigJson(layers));
        f.erase("index.json");
        files.insert(f.begin(), f.end());
        json d = Descriptor("application/vnd.oci.image.manifest.v1+json",
                            ManifestJson(layers, ConfigJson(layers)));
        d["platform"] = platform;
        descs.push_back(d);
      }
      const std::string image_index = json{{"schemaVersion", 2}, {"manifests", descs}}.dump();
      AddBlob(&files, image_index);
      files["index.json"] =
          json{{"schemaVersion", 2},
               {"manifests", {Descriptor("application/vnd.oci.image.index.v1+json", image_index)}}}
              .dump();
      WriteDir(files, path);
    };
    TempDir dir;
    auto store = OpenStore(dir.Sub("store"));
    const json plain = {{"os", "linux"}, {"architecture", host}};
    const json other_variant = {{"os", "linux"}, {"architecture", host}, {"variant", "v9"}};
    const json arm_v7 = {{"os", "linux"}, {"architecture", "arm"}, {"variant", "v7"}};
    const json windows = {{"os", "windows"}, {"architecture", host}};
    layout(dir.Sub("a"), {arm_v7, other_variant, windows, plain});
    CHECK(ReadFile(MustPull(store.get(), "oci:" + dir.Sub("a")).rootfs + "/arch") == plain.dump());
    layout(dir.Sub("b"), {arm_v7, windows});
    Result<Image> none = store->Pull("oci:" + dir.Sub("b"));
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().IsInvalidArgument());
    CHECK(none.status().message().find(": no manifest for linux/" + host) != std::string::npos);
  }

  TEST_CASE("registries reached over plain HTTP: loopback hosts only") {
    for (const char* host : {"localhost", "127.0.0.1", "127.1.2.3"}) {
      CAPTURE(host);
      CHECK(IsLoopbackHost(host));
    }
    for (const char* host : {"", "127.0.0.1.example.com", "127.evil", "10.0.0.1", "localhost.",
                             "ghcr.io", "128.0.0.1", "127.0.0"}) {
      CAPTURE(host);
      CHECK_FALSE(IsLoopbackHost(host));
    }
  }

  TEST_CASE("a missing file is NotFound naming it, bad references are InvalidArgument") {
    TempDir dir;
    auto store = OpenStore(dir.Sub("store"));
    for (const std::string& ref :
         {"oci:" + dir.Sub("nope"), "oci:" + dir.Sub("nope") + ":latest",
          "oci-archive:" + dir.Sub("nope.tar"), "docker-archive:" + dir.Sub("nope.tar")}) {
      Result<Image> image = store->Pull(ref);
      CHECK(image.status().IsNotFound());
      CHECK(image.status().message() == ref + ": no such file or directory");
    }
    fs::create_directories(dir.Sub("empty"));
    CHECK(store->Pull("oci:" + dir.Sub("empty")).status().message() ==
          "oci:" + dir.Sub("empty") + ": not an OCI image layout (no index.json)");
    CHECK(store->Pull("oci-archive:" + dir.Sub("empty")).status().IsInvalidArgument());
    CHECK(store->Pull("docker://busybox").status().IsInvalidArgument());
    // A registry reference is checked before anything is fetched.
    CHECK(store->Pull("127.0.0.1:5000/App:1").status().message() ==
          "127.0.0.1:5000/App:1: repository \"App\" must be lowercase");
    CHECK(store->Pull("oci:").status().IsInvalidArgument());
    WriteFile(dir.Sub("junk.tar"), "this is not a tar file at all");
    Result<Image> junk = store->Pull("oci-archive:" + dir.Sub("junk.tar"));
    CHECK(junk.status().IsInvalidArgument());
    CHECK(junk.status().message().rfind("oci-archive:" + dir.Sub("junk.tar") + ": ", 0) == 0);
  }

  TEST_CASE("a second Pull of an unchanged file reads nothing, also after a restart") {
    TempDir dir;
    std::vector<Layer> layers = {MakeLayer(BaseEntries())};
    const std::string ref = WriteImage(dir.path(), "oci-archive", layers, ConfigJson(layers));
    const std::string file = dir.Sub("image.tar");
    Image first;
    {
      auto store = OpenStore(dir.Sub("store"));
      first = MustPull(store.get(), ref);
      struct stat before = Lstat(first.rootfs);
      Image second = MustPull(store.get(), ref);
      CHECK(store->unpack_count() == 1);
      CHECK(second.id == first.id);
      CHECK(second.config.cmd == first.config.cmd);
      CHECK(Lstat(first.rootfs).st_ino == before.st_ino);
    }
    // Garbage of the same size with the old mtime: a Pull that read the file would fail.
    struct stat st = Lstat(file);
    WriteFile(file, std::string(static_cast<size_t>(st.st_size), 'x'));
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    REQUIRE(utimensat(AT_FDCWD, file.c_str(), times, 0) == 0);
    {
      auto store = OpenStore(dir.Sub("store"));  // from refs.json
      Image again = MustPull(store.get(), ref);
      CHECK(again.id == first.id);
      CHECK(again.config.entrypoint == first.config.entrypoint);
      CHECK(store->unpack_count() == 0);
      // A changed file is read again.
      times[1].tv_sec += 10;
      REQUIRE(utimensat(AT_FDCWD, file.c_str(), times, 0) == 0);
      CHECK(store->Pull(ref).status().IsInvalidArgument());
    }
    // The same image again under a new name: recognised by its config digest.
    WriteImage(dir.path(), "oci-archive", layers, ConfigJson(layers));
    {
      auto store = OpenStore(dir.Sub("store"));
      CHECK(MustPull(store.get(), ref).id == first.id);
      CHECK(MustPull(store.get(), WriteImage(dir.path(), "oci", layers, ConfigJson(layers))).id ==
            first.id);
      CHECK(store->unpack_count() == 0);
      // A cached image whose directory went away is unpacked again.
      REQUIRE(std::system(("rm -rf " + first.rootfs).c_str()) == 0);
      CheckBaseRootfs(MustPull(store.get(), ref).rootfs);
      CHECK(store->unpack_count() == 1);
    }
  }

  // Issue 9: a damaged file of the store costs the image it belongs to an unpack; the
  // other images and the store itself go on.
  TEST_CASE("a damaged refs.json or image config.json costs only that image an unpack") {
    for (const std::string kind : kDamages) {
      CAPTURE(kind);
      TempDir dir;
      std::vector<Layer> a = {MakeLayer({File("a", "a")})};
      std::vector<Layer> b = {MakeLayer({File("b", "b")})};
      const std::string ref_a = WriteImage(dir.path(), "oci", a, ConfigJson(a));
      const std::string ref_b = WriteImage(dir.path(), "oci-archive", b, ConfigJson(b));
      Image image_a, image_b;
      {
        auto store = OpenStore(dir.Sub("store"));
        image_a = MustPull(store.get(), ref_a);
        image_b = MustPull(store.get(), ref_b);
      }
      const std::string refs = dir.Sub("store/refs.json");
      WriteFile(refs, Damaged(kind, ReadFile(refs)));
      const std::string config_a = fs::path(image_a.rootfs).parent_path().string() + "/config.json";
      WriteFile(config_a, Damaged(kind, ReadFile(config_a)));
      auto store = OpenStore(dir.Sub("store"));
      // Without refs.json, b is read again and found unpacked by its config's digest.
      CHECK(MustPull(store.get(), ref_b).id == image_b.id);
      CHECK(store->unpack_count() == 0);
      Image again = MustPull(store.get(), ref_a);
      CHECK(again.id == image_a.id);
      CHECK(store->unpack_count() == 1);
      CHECK(ReadFile(again.rootfs + "/a") == "a");
      CHECK(MustPull(store.get(), ref_a).config.cmd == image_a.config.cmd);
    }
  }

  TEST_CASE("Open removes what a crash left mid-unpack") {
    TempDir dir;
    fs::create_directories(dir.Sub("store/tmp-abc123/rootfs/usr/bin"));
    WriteFile(dir.Sub("store/tmp-abc123/rootfs/usr/bin/half"), "x");
    REQUIRE(chmod(dir.Sub("store/tmp-abc123/rootfs/usr").c_str(), 0555) == 0);
    WriteFile(dir.Sub("store/refs.json"), "{not json");
    auto store = OpenStore(dir.Sub("store"));
    // What is left: refs.json, and the registry's blob directories, made at open.
    CHECK(Listing(dir.Sub("store")) == std::set<std::string>{"refs.json", "blobs", "partial"});
  }

  TEST_CASE("List, Resolve and Remove: an image goes with its references, others stay") {
    TempDir dir;
    std::vector<Layer> a = {MakeLayer({File("which", "a")})};
    std::vector<Layer> b = {
        MakeLayer({File("which", "b"), File("big", std::string(1 << 16, 'b'))})};
    fs::create_directories(dir.Sub("a"));
    fs::create_directories(dir.Sub("b"));
    const std::string ref_a = WriteImage(dir.Sub("a"), "oci-archive", a, ConfigJson(a));
    const std::string ref_b = WriteImage(dir.Sub("b"), "oci", b, ConfigJson(b));
    auto store = OpenStore(dir.Sub("store"));
    std::vector<std::string> phases;
    PullOptions options;
    options.progress = [&](const PullProgress& p) { phases.push_back(p.phase); };
    Image image_a = store->Pull(ref_a, options).value();
    CHECK(phases == std::vector<std::string>{"resolving", "unpacking"});
    Image image_b = MustPull(store.get(), ref_b);
    Result<std::vector<StoredImage>> listed = store->List();
    REQUIRE(listed.ok());
    REQUIRE(listed->size() == 2);
    std::map<std::string, StoredImage> by_id;
    for (const StoredImage& i : *listed) by_id[i.id] = i;
    CHECK(by_id[image_a.id].refs == std::vector<std::string>{ref_a});
    CHECK(by_id[image_b.id].size_bytes > by_id[image_a.id].size_bytes);
    CHECK(by_id[image_b.id].size_bytes >= (1 << 16));
    CHECK(by_id[image_a.id].created_ms > 0);
    CHECK(by_id[image_a.id].used_ms >= by_id[image_a.id].created_ms);
    CHECK(store->Size().value() >= by_id[image_a.id].size_bytes + by_id[image_b.id].size_bytes);

    CHECK(store->Resolve(ref_a).value() == image_a.id);
    CHECK(store->Resolve(image_b.id).value() == image_b.id);
    CHECK(store->Resolve("oci:/nope").status().message() == "oci:/nope: no such image");

    Result<int64_t> freed = store->Remove(image_b.id);
    REQUIRE(freed.ok());
    CHECK(*freed >= (1 << 16));
    CHECK(Exists(image_a.rootfs));
    CHECK(!Exists(image_b.rootfs));
    CHECK(Listing(dir.Sub("store")) ==
          std::set<std::string>{"refs.json", "blobs", "partial", image_a.id.substr(7)});
    CHECK(store->Resolve(ref_b).status().IsNotFound());
    // Never: only what the store has, also when the file has changed or gone.
    PullOptions never;
    never.policy = PullPolicy::kNever;
    CHECK(store->Pull(ref_b, never).status().message() ==
          ref_b + ": not present, and imagePullPolicy is Never");
    fs::remove_all(dir.Sub("a"));
    CHECK(store->Pull(ref_a, never).value().id == image_a.id);
    CHECK(ReadFile(MustPull(store.get(), ref_b).rootfs + "/which") == "b");
    CHECK(store->unpack_count() == 3);
    // Forgotten after a restart too.
    REQUIRE(store->Remove(image_a.id).ok());
    store = OpenStore(dir.Sub("store"));
    CHECK(store->Pull(ref_a, never).status().code() == Status::Code::kFailedPrecondition);
    CHECK(store->List()->size() == 1);
  }

  TEST_CASE("ShrinkTo removes the least recently used images first, never those kept") {
    TempDir dir;
    std::map<std::string, std::string> refs;
    for (const std::string name : {"a", "b", "c"}) {
      std::vector<Layer> l = {
          MakeLayer({File("which", name), File("pad", std::string(1 << 15, 'p'))})};
      fs::create_directories(dir.Sub(name));
      refs[name] = WriteImage(dir.Sub(name), "oci-archive", l, ConfigJson(l));
    }
    auto store = OpenStore(dir.Sub("store"));
    std::map<std::string, std::string> ids;
    for (const std::string name : {"a", "b", "c"}) {
      ids[name] = MustPull(store.get(), refs[name]).id;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // distinct mtimes
    }
    MustPull(store.get(), refs["b"]);  // b is now the most recently used
    const int64_t size = store->Size().value();
    int64_t left = 0;
    CHECK(store->ShrinkTo(size, {}, &left).value().empty());
    CHECK(left == size);
    // Above the limit by a byte: the least recently used one goes, a.
    std::vector<StoredImage> removed = store->ShrinkTo(size - 1, {}, &left).value();
    REQUIRE(removed.size() == 1);
    CHECK(removed[0].id == ids["a"]);
    CHECK(removed[0].refs == std::vector<std::string>{refs["a"]});
    CHECK(left == size - removed[0].size_bytes);
    CHECK(store->Size().value() == left);
    // Nothing allowed: all but the kept one go, c before b.
    removed = store->ShrinkTo(0, {ids["b"]}, &left).value();
    REQUIRE(removed.size() == 1);
    CHECK(removed[0].id == ids["c"]);
    CHECK(left > 0);
    REQUIRE(store->List()->size() == 1);
    CHECK(store->List()->at(0).id == ids["b"]);
  }

  TEST_CASE("Tag names an unpacked image by a registry reference that Pull then finds") {
    TempDir dir;
    std::vector<Layer> a = {MakeLayer({File("which", "a")})};
    const std::string ref = WriteImage(dir.path(), "docker-archive", a, ConfigJson(a));
    {
      auto store = OpenStore(dir.Sub("store"));
      Image image = MustPull(store.get(), ref);
      CHECK(store->Tag("Busybox", image.id).IsInvalidArgument());
      CHECK(store->Tag("busybox:1.36", "sha256:" + std::string(64, 'a')).IsNotFound());
      REQUIRE(store->Tag("busybox:1.36", image.id).ok());
      CHECK(store->Resolve("docker.io/library/busybox:1.36").value() == image.id);
    }
    auto store = OpenStore(dir.Sub("store"));  // from refs.json
    // Found without a registry: a pull from docker.io would fail here.
    CHECK(ReadFile(MustPull(store.get(), "busybox:1.36").rootfs + "/which") == "a");
    CHECK(store->unpack_count() == 0);
    Result<std::vector<StoredImage>> listed = store->List();
    REQUIRE(listed->size() == 1);
    CHECK(listed->at(0).refs.size() == 2);
  }

  TEST_CASE("ImportArchive tells the formats apart by content and names what they carry") {
    TempDir dir;
    std::vector<Layer> a = {MakeLayer({File("which", "a")})};
    std::vector<Layer> b = {MakeLayer({File("which", "b")})};
    WriteTar(DockerLayout(a, ConfigJson(a)), dir.Sub("docker.bin"));  // RepoTags test:latest
    WriteTar(OciLayout(b, ConfigJson(b), "ghcr.io/org/b:2"), dir.Sub("oci.bin"));
    WriteTar(OciLayout(b, ConfigJson(b), "latest"), dir.Sub("bare-tag.bin"));
    WriteTar(OciLayout(b, ConfigJson(b), "Org/App:1"), dir.Sub("bad-name.bin"));
    WriteFile(dir.Sub("junk.bin"), MakeTar({File("x", "y")}));
    auto store = OpenStore(dir.Sub("store"));
    std::vector<std::string> names;
    Image image_a = store->ImportArchive(dir.Sub("docker.bin"), &names).value();
    CHECK(names == std::vector<std::string>{"docker.io/library/test:latest"});
    names.clear();
    Image image_b = store->ImportArchive(dir.Sub("oci.bin"), &names).value();
    CHECK(names == std::vector<std::string>{"ghcr.io/org/b:2"});
    names.clear();
    CHECK(store->ImportArchive(dir.Sub("bare-tag.bin"), &names).ok());
    CHECK(names.empty());
    Status bad = store->ImportArchive(dir.Sub("bad-name.bin"), &names).status();
    CHECK(bad.IsInvalidArgument());
    CHECK(bad.message().find(dir.Sub("bad-name.bin")) != std::string::npos);
    CHECK(store->ImportArchive(dir.Sub("junk.bin"), &names).status().message() ==
          dir.Sub("junk.bin") +
              ": neither an OCI archive (no index.json) nor `docker save` output (no "
              "manifest.json)");
    CHECK(ReadFile(MustPull(store.get(), "test").rootfs + "/which") == "a");
    CHECK(MustPull(store.get(), "ghcr.io/org/b:2").id == image_b.id);
    CHECK(store->unpack_count() == 2);
    CHECK(image_a.id != image_b.id);
  }

  TEST_CASE("PrepareRootfs: containers write to their own root filesystems") {
    REQUIRE_MESSAGE(geteuid() == 0, "mounts overlayfs and keeps owners: must run as root");
    for (bool allow_overlay : {true, false}) {
      CAPTURE(allow_overlay);
      TempDir dir;
      std::vector<Layer> layers = {MakeLayer(BaseEntries())};
      auto store = OpenStore(dir.Sub("store"), allow_overlay);
      Image image =
          MustPull(store.get(), WriteImage(dir.path(), "oci-archive", layers, ConfigJson(layers)));
      const std::string a = dir.Sub("c1/rootfs"), b = dir.Sub("c2/rootfs");
      fs::create_directories(dir.Sub("c1"));
      fs::create_directories(dir.Sub("c2"));
      MountGuard guard_a{a}, guard_b{b};
      Result<ImageStore::RootfsKind> kind_a = store->PrepareRootfs(image, a, dir.Sub("c1/scratch"));
      REQUIRE_MESSAGE(kind_a.ok(), kind_a.status().ToString());
      Result<ImageStore::RootfsKind> kind_b = store->PrepareRootfs(image, b, dir.Sub("c2/scratch"));
      REQUIRE_MESSAGE(kind_b.ok(), kind_b.status().ToString());
      if (allow_overlay) {
        // Root with overlayfs in the kernel (this machine): the mount must work.
        CHECK(*kind_a == ImageStore::RootfsKind::kOverlay);
        CHECK(Mounted(a));
      } else {
        CHECK(*kind_a == ImageStore::RootfsKind::kCopy);
        CHECK(!Mounted(a));
      }
      CheckBaseRootfs(a);
      CheckBaseRootfs(b);
      CHECK((Lstat(a).st_mode & 07777) == 0755);

      WriteFile(a + "/etc/hello", "changed\n");
      WriteFile(a + "/new", "new");
      REQUIRE(unlink((a + "/bin/link").c_str()) == 0);
      REQUIRE(chmod((a + "/bin/tool").c_str(), 0700) == 0);
      CHECK(ReadFile(image.rootfs + "/etc/hello") == "hello\n");
      CHECK(ReadFile(b + "/etc/hello") == "hello\n");
      CHECK(!Exists(image.rootfs + "/new"));
      CHECK(!Exists(b + "/new"));
      CHECK(Exists(image.rootfs + "/bin/link"));
      CHECK(Exists(b + "/bin/link"));
      CHECK((Lstat(image.rootfs + "/bin/tool").st_mode & 07777) == 04755);

      // A busy mount is detached.
      std::ifstream busy(a + "/etc/hello");
      REQUIRE(store->ReleaseRootfs(a, dir.Sub("c1/scratch")).ok());
      REQUIRE(store->ReleaseRootfs(b, dir.Sub("c2/scratch")).ok());
      CHECK(!Mounted(a));
      CHECK(!Mounted(b));
      CHECK(Listing(dir.Sub("c1")).empty());
      CHECK(Listing(dir.Sub("c2")).empty());
      CHECK(store->ReleaseRootfs(a, dir.Sub("c1/scratch")).ok());  // already gone
      CheckBaseRootfs(image.rootfs);
    }
  }

  TEST_CASE("PrepareRootfs wants an empty target and refuses an image not unpacked") {
    TempDir dir;
    std::vector<Layer> layers = {MakeLayer({File("f", "x")})};
    auto store = OpenStore(dir.Sub("store"), false);
    Image image = MustPull(store.get(), WriteImage(dir.path(), "oci", layers, ConfigJson(layers)));
    WriteFile(dir.Sub("full/data"), "precious");
    Result<ImageStore::RootfsKind> kind =
        store->PrepareRootfs(image, dir.Sub("full"), dir.Sub("scratch"));
    CHECK(kind.status().code() == Status::Code::kFailedPrecondition);
    CHECK(ReadFile(dir.Sub("full/data")) == "precious");
    CHECK(!Exists(dir.Sub("scratch")));
    fs::create_directories(dir.Sub("empty"));
    CHECK(store->PrepareRootfs(image, dir.Sub("empty"), dir.Sub("scratch")).ok());
    Image gone = image;
    gone.rootfs = dir.Sub("store/nothing/rootfs");
    CHECK(store->PrepareRootfs(gone, dir.Sub("t2"), dir.Sub("s2")).status().IsNotFound());
  }

  TEST_CASE("ReleaseRootfs never follows what a container planted") {
    REQUIRE_MESSAGE(geteuid() == 0, "mounts overlayfs: must run as root");
    for (bool allow_overlay : {true, false}) {
      CAPTURE(allow_overlay);
      TempDir dir, outside;
      WriteFile(outside.Sub("secret"), "keep me");
      std::vector<Layer> layers = {MakeLayer(BaseEntries())};
      auto store = OpenStore(dir.Sub("store"), allow_overlay);
      Image image =
          MustPull(store.get(), WriteImage(dir.path(), "oci-archive", layers, ConfigJson(layers)));
      const std::string target = dir.Sub("rootfs"), scratch = dir.Sub("scratch");
      MountGuard guard{target};
      REQUIRE(store->PrepareRootfs(image, target, scratch).ok());
      REQUIRE(symlink(outside.path().c_str(), (target + "/escape").c_str()) == 0);
      REQUIRE(symlink(outside.Sub("secret").c_str(), (target + "/etc/escape").c_str()) == 0);
      REQUIRE(symlink("/", (target + "/root-link").c_str()) == 0);
      fs::create_directories(target + "/ro/inner");
      WriteFile(target + "/ro/inner/file", "x");
      REQUIRE(chmod((target + "/ro/inner").c_str(), 0500) == 0);
      REQUIRE(chmod((target + "/ro").c_str(), 0) == 0);
      REQUIRE(store->ReleaseRootfs(target, scratch).ok());
      CHECK(!Exists(target));
      CHECK(!Exists(scratch));
      CHECK(ReadFile(outside.Sub("secret")) == "keep me");
      CHECK(Exists("/etc/passwd"));
      CheckBaseRootfs(image.rootfs);
    }
  }

  // ---- Hostile layers: each is refused whole, leaving the store as it was and the
  // world outside untouched.

  struct Hostile {
    std::string name;
    std::vector<std::vector<TarEntry>> layers;
    std::string message;  // after `entry "` ...
  };

  TEST_CASE("hostile layers are refused with the entry named, and leave nothing behind") {
    REQUIRE_MESSAGE(geteuid() == 0, "device entries and owners: must run as root");
    TempDir dir, outside;
    const std::string out = outside.path();
    WriteFile(outside.Sub("secret"), "keep me");
    const std::string dotdots = "../../../../../../../../../../../../../..";
    const std::vector<TarEntry> benign = {Dir("etc"), File("etc/hello", "hello")};
    std::vector<Hostile> cases = {
        {"dot-dot",
         {{File("../../etc/passwd", "pwned")}},
         "entry \"../../etc/passwd\": path escapes the image root"},
        {"dot-dot in the middle",
         {{File("etc/../../" + dotdots + out + "/pwned", "x")}},
         "entry \"etc/../../" + dotdots + out + "/pwned\": path escapes the image root"},
        {"absolute",
         {{File(out + "/pwned", "pwned")}},
         "entry \"" + out + "/pwned\": absolute path"},
        {"absolute symlink, then write through it",
         {{Symlink("evil", out), File("evil/pwned", "x")}},
         "entry \"evil/pwned\": path passes through the symbolic link \"evil\""},
        {"relative symlink, then write through it",
         {{Dir("a"), Symlink("a/evil", dotdots + out), File("a/evil/pwned", "x")}},
         "entry \"a/evil/pwned\": path passes through the symbolic link \"a/evil\""},
        {"symlink in one layer, write through it in the next",
         {{Symlink("evil", out)}, {File("evil/pwned", "x")}},
         "entry \"evil/pwned\": path passes through the symbolic link \"evil\""},
        {"directory replaced by a symlink, then written through",
         {{Dir("d"), File("d/ok", "1"), Symlink("d", out), File("d/pwned", "x")}},
         "entry \"d/pwned\": path passes through the symbolic link \"d\""},
        {"nested directory replaced by a symlink, then written through",
         {{Dir("x"), Dir("x/d"), File("x/d/ok", "1"), Symlink("x/d", out), File("x/d/pwned", "x")}},
         "entry \"x/d/pwned\": path passes through the symbolic link \"x/d\""},
        {"whiteout through a symlink",
         {{Symlink("evil", out), File("evil/.wh.secret", "")}},
         "entry \"evil/.wh.secret\": path passes through the symbolic link \"evil\""},
        {"opaque whiteout through a symlink",
         {{Symlink("evil", out)}, {File("evil/.wh..wh..opq", "")}},
         "entry \"evil/.wh..wh..opq\": path passes through the symbolic link \"evil\""},
        {"whiteout of ..", {{File("etc/.wh...", "")}}, "entry \"etc/.wh...\": invalid whiteout"},
        {"hard link to outside",
         {{Hardlink("etc/shadow", "../../../" + out + "/secret")}},
         "entry \"etc/shadow\": hard link target \"../../../" + out +
             "/secret\": path escapes the image root"},
        {"hard link to an absolute path",
         {{Hardlink("etc/shadow", out + "/secret")}},
         "entry \"etc/shadow\": hard link target \"" + out + "/secret\": absolute path"},
        {"hard link through a symlink",
         {{Symlink("evil", out), Hardlink("etc/shadow", "evil/secret")}},
         "entry \"etc/shadow\": hard link target \"evil/secret\" passes through the symbolic "
         "link \"evil\""},
        {"character device",
         {{TarEntry{"dev/null", 'c', "", 0666, 0, 0, {}}}},
         "entry \"dev/null\": character device nodes are not allowed in images"},
        {"block device",
         {{TarEntry{"dev/sda", 'b', "", 0660, 0, 0, {}}}},
         "entry \"dev/sda\": block device nodes are not allowed in images"},
        {"control characters in a name",
         {{File("../evil\nname", "x")}},
         "entry \"../evil\\nname\": path escapes the image root"},
    };
    auto store = OpenStore(dir.Sub("store"));
    // A good image first, so "as it was" is not just an empty directory.
    std::vector<Layer> good = {MakeLayer(benign)};
    MustPull(store.get(), WriteImage(dir.path(), "oci", good, ConfigJson(good)));
    const std::set<std::string> before = Listing(dir.Sub("store"));
    const std::string refs_before = ReadFile(dir.Sub("store/refs.json"));

    for (const Hostile& c : cases) {
      for (const std::string format : {"oci-archive", "docker-archive"}) {
        CAPTURE(c.name);
        CAPTURE(format);
        std::vector<Layer> layers;
        for (size_t i = 0; i < c.layers.size(); i++) {
          std::vector<TarEntry> entries = benign;
          entries.insert(entries.end(), c.layers[i].begin(), c.layers[i].end());
          layers.push_back(MakeLayer(entries));
        }
        TempDir images;
        const std::string ref = WriteImage(images.path(), format, layers, ConfigJson(layers));
        Result<Image> image = store->Pull(ref);
        CHECK(image.status().IsInvalidArgument());
        // The refusal may come from the last layer or an earlier one.
        bool named = false;
        for (const Layer& l : layers) {
          const std::string id = format == "docker-archive" ? l.diff_id : l.Digest();
          named = named || image.status().message() == ref + ": layer " + id + ": " + c.message;
        }
        CHECK_MESSAGE(named, image.status().message(), " (want ", c.message, ")");
        CHECK(Listing(dir.Sub("store")) == before);
        CHECK(ReadFile(dir.Sub("store/refs.json")) == refs_before);
        CHECK(Listing(out) == std::set<std::string>{"secret"});
        CHECK(ReadFile(outside.Sub("secret")) == "keep me");
      }
    }
    CHECK(Exists("/etc/passwd"));
  }

  TEST_CASE("symlinks themselves are allowed, absolute and relative") {
    TempDir dir, outside;
    std::vector<Layer> layers = {MakeLayer(
        {Symlink("abs", outside.path()), Symlink("rel", "../../../../etc/passwd"), Dir("lib"),
         Symlink("lib64", "lib"), File("lib/x.so", "x"), Hardlink("lib/y.so", "lib64")})};
    auto store = OpenStore(dir.Sub("store"));
    Image image = MustPull(store.get(), WriteImage(dir.path(), "oci", layers, ConfigJson(layers)));
    CHECK(fs::read_symlink(image.rootfs + "/abs") == outside.path());
    CHECK(fs::read_symlink(image.rootfs + "/rel") == "../../../../etc/passwd");
    // A hard link to a symlink links the symlink itself, never what it points to.
    CHECK(S_ISLNK(Lstat(image.rootfs + "/lib/y.so").st_mode));
    CHECK(Listing(outside.path()).empty());
  }

  TEST_CASE("examples/images/make-busybox-image builds images the store runs from") {
    TempDir dir;
    const std::string tool = std::string(PETREL_SOURCE_DIR) + "/examples/images/make-busybox-image";
    auto store = OpenStore(dir.Sub("store"));
    std::string id;
    for (const std::string format : {"oci-archive", "oci-dir", "docker-archive"}) {
      CAPTURE(format);
      const std::string out = dir.Sub("busybox-" + format);
      const std::string cmd = tool + " --format " + format + " " + out + " >/dev/null";
      REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
      const std::string ref = (format == "oci-dir" ? "oci:" : format + ":") + out;
      auto start = std::chrono::steady_clock::now();
      Image image = MustPull(store.get(), ref);
      auto cold = std::chrono::steady_clock::now() - start;
      start = std::chrono::steady_clock::now();
      MustPull(store.get(), ref);
      auto cached = std::chrono::steady_clock::now() - start;
      MESSAGE(format, ": Pull ",
              std::chrono::duration_cast<std::chrono::microseconds>(cold).count(), " us, cached ",
              std::chrono::duration_cast<std::chrono::microseconds>(cached).count(), " us");
      // The same config bytes in every format: one image.
      if (id.empty()) id = image.id;
      CHECK(image.id == id);
      CHECK(image.config.cmd == std::vector<std::string>{"/bin/sh"});
      CHECK(image.config.entrypoint.empty());
      CHECK(image.config.env == std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"});
      CHECK(fs::read_symlink(image.rootfs + "/bin/sh") == "busybox");
      CHECK((Lstat(image.rootfs + "/bin/busybox").st_mode & 07777) == 0755);
      CHECK((Lstat(image.rootfs + "/tmp").st_mode & 07777) == 01777);
      CHECK(ReadFile(image.rootfs + "/etc/passwd").find("nobody:x:65534") != std::string::npos);
      for (const char* d : {"proc", "sys", "dev"})
        CHECK(S_ISDIR(Lstat(image.rootfs + "/" + d).st_mode));
    }
    CHECK(store->unpack_count() == 1);
    // Idempotent: a rebuild is byte for byte the same file.
    const std::string again = dir.Sub("again.tar");
    REQUIRE(std::system((tool + " " + again + " >/dev/null").c_str()) == 0);
    CHECK(ReadFile(again) == ReadFile(dir.Sub("busybox-oci-archive")));
  }
}

}  // namespace
}  // namespace petrel::internal
