#include "lib/image/registry.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <utility>

#include "lib/image/curl_lib.h"
#include "lib/image/digest.h"
#include "lib/image/libcrypto_sha256.h"
#include "lib/util/fs.h"
#include "lib/util/json.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "lib/util/workers.h"

namespace petrel::internal {

namespace {

using nlohmann::json;

constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kBlobPrefix = "blobs/sha256/";
constexpr size_t kMaxErrorBody = 4096;
constexpr long kConnectTimeoutSeconds = 30;
constexpr long kLowSpeedBytes = 1024;  // slower than this for kLowSpeedSeconds: give up
constexpr long kLowSpeedSeconds = 60;
// libcurl's receive buffer (its largest before 7.88), the download's write buffer and
// the hash thread's read buffer: a write, and a wake of that thread, per 512 KiB.
constexpr long kBufferSize = 512 * 1024;
constexpr size_t kMaxTokenResponse = 64 * 1024;
constexpr uint64_t kWriteBackBytes = 8 << 20;  // a blob's write-back starts every 8 MiB

// One GET's outcome. `sink` got the body of a 2xx answer; `error_body` holds the start
// of any other.
struct Response {
  long code = 0;
  std::string content_type;
  std::string www_authenticate;
  std::string error_body;
};

struct Transfer {
  CURL* curl = nullptr;
  const std::function<Status(const char*, size_t)>* sink = nullptr;
  Status sink_status;
  Response* response = nullptr;
  uint64_t range_from = 0;                         // a Range was asked from this byte
  const std::function<void()>* restart = nullptr;  // drops what the sink kept
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long code = 0;
  PETREL_CURL(curl_easy_getinfo)(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code > 299) {
    std::string& body = t->response->error_body;
    body.append(data, std::min(len, kMaxErrorBody - std::min(kMaxErrorBody, body.size())));
    return len;
  }
  if (t->range_from > 0 && code == 200) {  // the whole body after all: start again
    (*t->restart)();
    t->range_from = 0;
  }
  t->sink_status = (*t->sink)(data, len);
  return t->sink_status.ok() ? len : 0;
}

// libcurl's progress callback, called about once a second even while nothing arrives:
// non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK).
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return (*static_cast<const std::function<bool()>*>(user))() ? 1 : 0;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {  // a new answer (after a redirect)
    t->response->content_type.clear();
    t->response->www_authenticate.clear();
  }
  std::string value;
  if (HeaderValue(line, "content-type:", &value)) {
    t->response->content_type = value.substr(0, value.find(';'));
  } else if (HeaderValue(line, "www-authenticate:", &value)) {
    t->response->www_authenticate = value.substr(0, kMaxErrorBody);
  }
  return size * n;
}

// The registry's own words for a failed request: "CODE: message" of its first error.
std::string RegistryMessage(const std::string& body) {
  Result<json> j = ParseJson(body, "error");
  if (!j.ok() || !j->is_object()) return "";
  auto errors = j->find("errors");
  if (errors == j->end() || !errors->is_array() || errors->empty()) return "";
  const json& e = (*errors)[0];
  if (!e.is_object()) return "";
  std::string out;
  if (e.contains("code") && e["code"].is_string()) out = e["code"].get<std::string>();
  if (e.contains("message") && e["message"].is_string()) {
    out += (out.empty() ? "" : ": ") + e["message"].get<std::string>();
  }
  return out.substr(0, 200);
}

// Hashes bytes [*at, to) of `fd` (named `path` in errors) into `hash`, read through
// `buf`; *at ends where the reading stopped.
Status HashRange(int fd, const std::string& path, uint64_t to, Sha256* hash, std::string* buf,
                 uint64_t* at) {
  while (*at < to) {
    const ssize_t n =
        pread(fd, buf->data(), std::min<uint64_t>(buf->size(), to - *at), static_cast<off_t>(*at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(path, "read", errno);
    if (n == 0) return Status::Internal(path + ": shorter than what was written to it");
    hash->Update(buf->data(), static_cast<size_t>(n));
    *at += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

// Hashes a blob file while its download appends to it. The download says how far the
// file is written (Advance); a thread of this object's own reads what is new back from
// the page cache and hashes it. Receiving and hashing then overlap (on a fast link they
// take about as long as each other), and the part an earlier pull kept is hashed while
// the rest arrives. The thread also starts the disk's write-back of what it hashed,
// every kWriteBackBytes: the image's commit (a syncfs) then finds little left to do,
// the page cache holds few dirty pages of the blob, and the download's own thread
// submits no disk I/O (about 1 ms per 8 MiB, a tenth of a fast download).
class TrailingHash {
 public:
  // Hashes `fd` (named `path` in errors) from its start; `written` bytes are there now.
  TrailingHash(int fd, std::string path, uint64_t written)
      : fd_(fd),
        path_(std::move(path)),
        written_(written),
        hash_(std::make_unique<Sha256>(LoadedLibcryptoSha256())),
        thread_([this] { Run(); }) {}
  ~TrailingHash() {
    {
      std::lock_guard<std::mutex> l(mu_);
      finishing_ = true;
      written_ = hashed_;  // nothing more to hash
    }
    cv_.notify_all();
    thread_.join();
  }
  TrailingHash(const TrailingHash&) = delete;
  TrailingHash& operator=(const TrailingHash&) = delete;

  // The file holds `written` bytes now.
  void Advance(uint64_t written) {
    {
      std::lock_guard<std::mutex> l(mu_);
      written_ = written;
    }
    cv_.notify_one();
  }

  // Waits until every written byte is hashed: "sha256:<hex>", or the error reading them.
  // REQUIRES: called once, after the last Advance.
  Result<std::string> Finish() {
    std::unique_lock<std::mutex> l(mu_);
    finishing_ = true;
    cv_.notify_all();
    cv_.wait(l, [this] { return ended_; });
    if (!error_.ok()) return error_;
    return FinishDigest(hash_.get());
  }

 private:
  void Run() {
    std::string buf(kBufferSize, '\0');
    uint64_t flushed = 0;  // the bytes whose write-back was started
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [this] { return hashed_ < written_ || finishing_; });
      if (hashed_ >= written_ || !error_.ok()) break;  // finishing, all hashed
      const uint64_t to = written_;
      l.unlock();
      uint64_t at = hashed_;  // only this thread moves hashed_
      Status s = HashRange(fd_, path_, to, hash_.get(), &buf, &at);
      if (at - flushed >= kWriteBackBytes) {
        sync_file_range(fd_, static_cast<off_t>(flushed), static_cast<off_t>(at - flushed),
                        SYNC_FILE_RANGE_WRITE);
        flushed = at;
      }
      l.lock();
      hashed_ = at;
      error_ = s;
    }
    ended_ = true;
    cv_.notify_all();
  }

  const int fd_;
  const std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t written_;              // guarded by mu_
  uint64_t hashed_ = 0;           // guarded by mu_
  bool finishing_ = false;        // guarded by mu_
  bool ended_ = false;            // guarded by mu_
  Status error_;                  // guarded by mu_
  std::unique_ptr<Sha256> hash_;  // this object's thread's until it ends
  std::thread thread_;            // last: starts once the members above are made
};

class Source : public ImageSource {
 public:
  Source(const ImageReference& ref, const RegistryOptions& options) : ref_(ref), options_(options) {
    const std::string registry = ref_.Registry();
    bool insecure =
        IsLoopbackHost(ref_.Host()) ||
        std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(),
                  ref_.domain) != options_.insecure_registries.end();
    base_ = (insecure ? "http://" : "https://") + registry + "/v2/" + ref_.repository + "/";
    protocols_ = insecure ? "http,https" : "https";
    blob_dir_ = options_.store_dir + "/" + kRegistryBlobDir;
  }

  Status StreamFile(const std::string& name,
                    const std::function<Status(ByteSource*)>& fn) override {
    if (name == "index.json") {
      PETREL_ASSIGN_OR_RETURN(const std::string index, Index());
      StringSource source(index);
      return fn(&source);
    }
    const std::string digest = "sha256:" + name.substr(std::min(name.size(), kBlobPrefix.size()));
    if (name.compare(0, kBlobPrefix.size(), kBlobPrefix) != 0 || !IsSha256Digest(digest)) {
      return Status::InvalidArgument("no " + name + " in a registry image");
    }
    PETREL_RETURN_IF_ERROR(Fetch(digest));
    return ImageSource::Dir(options_.store_dir + "/blobs")
        ->StreamFile("sha256/" + digest.substr(7), fn);
  }

 private:
  class StringSource : public ByteSource {
   public:
    explicit StringSource(const std::string& data) : data_(data) {}
    Result<size_t> Read(void* buf, size_t size) override {
      size_t n = std::min(size, data_.size() - pos_);
      std::copy_n(data_.data() + pos_, n, static_cast<char*>(buf));
      pos_ += n;
      return n;
    }

   private:
    const std::string& data_;
    size_t pos_ = 0;
  };

  // An index naming the manifest ref_ points at, fetched now (a tag may have moved).
  Result<std::string> Index() {
    std::string body, content_type;
    PETREL_RETURN_IF_ERROR(GetManifest(ref_.ManifestRef(), &body, &content_type));
    const std::string digest = Sha256Digest(body);
    if (!ref_.digest.empty() && digest != ref_.digest) {
      return Status::InvalidArgument("manifest " + ref_.digest +
                                     ": digest mismatch (the registry sent " + digest + ")");
    }
    PETREL_RETURN_IF_ERROR(KeepManifest(digest, body, content_type));
    json index = {{"schemaVersion", 2},
                  {"manifests", json::array({{{"digest", digest}, {"size", body.size()}}})}};
    if (!content_type.empty()) index["manifests"][0]["mediaType"] = content_type;
    return index.dump();
  }

  // GET manifests/`reference` (a tag or digest), at most kMaxManifestSize bytes.
  Status GetManifest(const std::string& reference, std::string* body, std::string* content_type) {
    const std::string what = "manifest " + reference;
    Response r;
    PETREL_RETURN_IF_ERROR(GetWithRetries(
        "manifests/" + reference, what, true,
        [&](const char* data, size_t n) {
          if (body->size() + n > kMaxManifestSize) {
            return Status::InvalidArgument(what + ": larger than " +
                                           std::to_string(kMaxManifestSize) + " bytes");
          }
          body->append(data, n);
          return Status::OK();
        },
        [&] { body->clear(); }, &r));
    *content_type = r.content_type;
    return Status::OK();
  }

  // Stores manifest `body` in the blob cache and remembers the manifests it names.
  Status KeepManifest(const std::string& digest, const std::string& body,
                      const std::string& content_type) {
    if (content_type == "application/vnd.docker.distribution.manifest.v1+json" ||
        content_type == "application/vnd.docker.distribution.manifest.v1+prettyjws") {
      return Status::NotSupported("manifest " + digest +
                                  ": Docker schema 1 manifests are not supported");
    }
    Result<json> j = ParseJson(body, "manifest " + digest);
    if (j.ok() && j->is_object()) {
      auto list = j->find("manifests");
      if (list != j->end() && list->is_array()) {
        for (const json& d : *list) {
          if (d.is_object() && d.contains("digest") && d["digest"].is_string()) {
            manifests_.insert(d["digest"].get<std::string>());
          }
        }
      }
    }
    PETREL_ASSIGN_OR_RETURN(const bool cached, Cached(digest));
    if (cached) return Status::OK();
    PETREL_ASSIGN_OR_RETURN(TempFile tmp, MakeTemp());
    Status s = WriteAll(tmp.fd.get(), body, tmp.path);
    return Commit(&tmp, digest, s);
  }

  struct TempFile {
    std::string path;
    UniqueFd fd;
  };

  // Makes blob `digest` present in the cache.
  Status Fetch(const std::string& digest) {
    PETREL_ASSIGN_OR_RETURN(const bool cached, Cached(digest));
    if (cached) return Status::OK();
    if (manifests_.count(digest) != 0) {
      std::string body, content_type;
      PETREL_RETURN_IF_ERROR(GetManifest(digest, &body, &content_type));
      const std::string got = Sha256Digest(body);
      if (got != digest) {
        return Status::InvalidArgument(
            "manifest " + digest + ": digest mismatch (the registry sent " + got + "; discarded)");
      }
      return KeepManifest(digest, body, content_type);
    }
    PETREL_ASSIGN_OR_RETURN(TempFile tmp, OpenPartial(digest));
    if (Exists(digest)) {  // another pull finished it meanwhile, and checked it
      verified_.insert(digest);
      return Status::OK();
    }
    // What an earlier pull (or process) kept of this blob is hashed again and the rest
    // asked for; should it be damaged, the download starts over once.
    const off_t kept = lseek(tmp.fd.get(), 0, SEEK_END);
    if (kept < 0) return ErrnoError(tmp.path, "seek", errno);
    uint64_t size = static_cast<uint64_t>(kept);
    const bool resumed = size > 0;
    auto hash = std::make_unique<TrailingHash>(tmp.fd.get(), tmp.path, size);
    Response r;
    // A place among the downloads at once, for this download only (not while waiting
    // for the partial file's lock above, not for the start over below).
    std::optional<Semaphore::Hold> slot;
    slot.emplace(options_.download_slots);
    // libcurl hands the body over 16 KiB at a time (CURL_MAX_WRITE_SIZE): gathered
    // here and written kBufferSize at a time, a write and a wake of the hash thread per
    // 512 KiB instead of per 16 KiB (those made a loopback download 0.72x curl's
    // throughput instead of about 1x).
    std::string pending;
    pending.reserve(kBufferSize);
    Status unwritten;  // a failed write: every later attempt fails with it
    auto write_pending = [&]() -> Status {
      if (pending.empty()) return Status::OK();
      Status w = WriteAll(tmp.fd.get(), pending, tmp.path);
      if (!w.ok()) {
        pending.clear();
        return w;
      }
      size += pending.size();
      pending.clear();
      hash->Advance(size);
      if (options_.on_bytes) options_.on_bytes(digest, size);
      return Status::OK();
    };
    // No `what`: the callers name the blob ("layer sha256:..", "config sha256:..").
    Status s = GetWithRetries(
        "blobs/" + digest, "", false,
        [&](const char* data, size_t n) {
          PETREL_RETURN_IF_ERROR(unwritten);
          if (size + pending.size() + n > options_.max_blob_bytes) {
            return Status::InvalidArgument("larger than " +
                                           std::to_string(options_.max_blob_bytes) + " bytes");
          }
          pending.append(data, n);
          return pending.size() >= kBufferSize ? write_pending() : Status::OK();
        },
        [&] {
          // Starts the blob again; should this fail, the digest check will.
          hash.reset();
          pending.clear();
          size = 0;
          if (options_.on_bytes) options_.on_bytes(digest, 0);
          if (ftruncate(tmp.fd.get(), 0) == 0) lseek(tmp.fd.get(), 0, SEEK_SET);
          hash = std::make_unique<TrailingHash>(tmp.fd.get(), tmp.path, 0);
        },
        &r,
        [&] {
          // Before a retry: what the broken attempt received is kept, the rest asked for.
          if (Status w = write_pending(); !w.ok()) unwritten = w;
          return size;
        });
    // What the last attempt received: the whole blob, or a part the next pull goes on
    // from when the link broke (Unavailable).
    if (s.ok() || s.code() == Status::Code::kUnavailable) {
      if (Status w = write_pending(); !w.ok()) s = w;
    }
    if (!unwritten.ok() && s.ok()) s = unwritten;
    slot.reset();
    if (s.ok()) {
      Result<std::string> got = hash->Finish();
      if (!got.ok()) {
        s = got.status();
      } else if (*got != digest) {
        s = Status::InvalidArgument("digest mismatch: the registry sent " + *got + " (discarded)");
      }
    }
    hash.reset();
    if (!s.ok() && resumed && s.code() != Status::Code::kUnavailable) {
      tmp.fd.reset();  // the kept part was bad (or whole: 416): once more from the start
      unlink(tmp.path.c_str());
      return Fetch(digest);
    }
    return Commit(&tmp, digest, s);
  }

  // The partial download of blob `digest`, <store>/partial/sha256/<hex>, opened for
  // appending and locked (flock) against another pull of the same blob, which waits.
  Result<TempFile> OpenPartial(const std::string& digest) {
    const std::string dir = options_.store_dir + "/" + kRegistryPartialDir;
    PETREL_RETURN_IF_ERROR(MakeRegistryDirs(options_.store_dir));
    for (;;) {
      TempFile t;
      t.path = dir + "/" + digest.substr(7);
      t.fd = UniqueFd(open(t.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (!t.fd.valid()) return ErrnoError(t.path, "open", errno);
      if (flock(t.fd.get(), LOCK_EX) != 0) return ErrnoError(t.path, "flock", errno);
      // The holder before may have renamed or removed it: lock the file the path names.
      if (IsFileAt(t.fd.get(), t.path)) return t;
      if (Exists(digest)) return t;  // renamed into the cache: the caller sees it there
    }
  }

  Result<TempFile> MakeTemp() {
    PETREL_RETURN_IF_ERROR(MakeRegistryDirs(options_.store_dir));
    TempFile t;
    t.path = options_.store_dir + "/tmp-blob-XXXXXX";
    t.fd = UniqueFd(mkostemp(t.path.data(), O_CLOEXEC));
    if (!t.fd.valid()) return ErrnoError(options_.store_dir, "mkstemp", errno);
    return t;
  }

  // Renames the temp file to blob `digest` when `s` is OK, with no fsync (see the
  // header: the image's commit syncs, and Cached checks what a power cut may have
  // damaged); removes it otherwise, except a partial download the link broke
  // (Unavailable), which the next pull goes on with.
  Status Commit(TempFile* tmp, const std::string& digest, Status s) {
    const std::string path = blob_dir_ + "/" + digest.substr(7);
    if (s.ok() && rename(tmp->path.c_str(), path.c_str()) != 0) {
      s = ErrnoError(path, "rename", errno);
    }
    if (!s.ok() && s.code() != Status::Code::kUnavailable) unlink(tmp->path.c_str());
    tmp->fd.reset();  // after the rename or unlink: the lock covers them
    if (s.ok()) verified_.insert(digest);
    return s;
  }

  // Whether blob `digest` is in the cache, whole. One this source neither wrote nor
  // checked, and that options_.durable does not vouch for, is hashed again first (a
  // power cut may have left it with other bytes); a damaged one is removed: false.
  Result<bool> Cached(const std::string& digest) {
    if (!Exists(digest)) return false;
    if (verified_.count(digest) != 0 || (options_.durable && options_.durable(digest))) {
      return true;
    }
    const std::string path = blob_dir_ + "/" + digest.substr(7);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return errno == ENOENT ? Result<bool>(false) : ErrnoError(path, "open", errno);
    struct stat held;
    if (fstat(fd.get(), &held) != 0) return ErrnoError(path, "stat", errno);
    Sha256 hash(LoadedLibcryptoSha256());
    std::string buf(kBufferSize, '\0');
    uint64_t at = 0;
    PETREL_RETURN_IF_ERROR(
        HashRange(fd.get(), path, static_cast<uint64_t>(held.st_size), &hash, &buf, &at));
    if (FinishDigest(&hash) != digest) {
      // Only the file checked: another pull may have put a whole one there meanwhile.
      if (IsFileAt(fd.get(), path)) unlink(path.c_str());
      return false;
    }
    verified_.insert(digest);
    return true;
  }

  bool Exists(const std::string& digest) const {
    struct stat st;
    return stat((blob_dir_ + "/" + digest.substr(7)).c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }

  // GET base_ + `path`, retried with back-off (1 s, 2 s, ...) after a failed connection
  // or a 5xx. With `kept` (the bytes the sink kept so far), a retry asks only for the
  // rest (HTTP Range); else, or when the server sends the whole body again, `restart`
  // drops what the sink kept first.
  Status GetWithRetries(const std::string& path, const std::string& what, bool manifest,
                        const std::function<Status(const char*, size_t)>& sink,
                        const std::function<void()>& restart, Response* r,
                        const std::function<uint64_t()>& kept = nullptr) {
    Status s;
    for (int attempt = 0; attempt < std::max(1, options_.attempts); attempt++) {
      // What the sink kept, also from an earlier pull, is asked for no more.
      const uint64_t from = kept ? kept() : 0;
      if (attempt > 0) {
        if (from == 0) restart();
        // The back-off in steps, so that a cancelled pull does not wait it out.
        for (int step = 0; step < 10 * (1 << (attempt - 1)) && !Cancelled(); step++) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
      if (Cancelled()) return Status::Unavailable(base_ + path + ": pull cancelled");
      *r = Response();
      s = Get(path, what, manifest, sink, r, from, &restart);
      if (s.code() != Status::Code::kUnavailable) break;
    }
    return s;
  }

  // What a request carries: nothing; the registry's own (the Bearer token, or the
  // credential once a Basic challenge asked for it); the credential, to a token realm.
  enum class Auth { kNone, kRegistry, kRealm };

  // GET base_ + `path` (from byte `from` on). After a 401 with a Bearer challenge,
  // fetches a token from the challenge's realm (with the credential when there is one)
  // and asks once more with it; after one with a Basic challenge, asks once more with
  // the credential.
  Status Get(const std::string& path, const std::string& what, bool manifest,
             const std::function<Status(const char*, size_t)>& sink, Response* r, uint64_t from = 0,
             const std::function<void()>* restart = nullptr) {
    const std::string prefix = what.empty() ? "" : what + ": ";
    const std::string url = base_ + path;
    PETREL_RETURN_IF_ERROR(Perform(url, manifest, sink, r, prefix, from, restart, Auth::kRegistry));
    if (r->code == 401) {
      const AuthChallenge challenge = ParseAuthChallenge(r->www_authenticate);
      bool again = false;
      if (challenge.scheme == "bearer") {  // also when the token had run out
        PETREL_RETURN_IF_ERROR(FetchToken(challenge, prefix));
        again = true;
      } else if (challenge.scheme == "basic" && options_.credential && !basic_) {
        if (options_.credential->user.empty()) {
          return Status::PermissionDenied(
              prefix + "registry " + ref_.domain + " asks for a user and password (Basic), and " +
              "its credential" + CredentialSource() +
              " is an identity token, which serves only Bearer token auth");
        }
        PETREL_RETURN_IF_ERROR(MaySendCredential(url, prefix));
        basic_ = true;
        again = true;
      }
      if (again) {
        *r = Response();
        PETREL_RETURN_IF_ERROR(
            Perform(url, manifest, sink, r, prefix, from, restart, Auth::kRegistry));
      }
    }
    if (r->code >= 200 && r->code <= 299) return Status::OK();
    const std::string answer = std::to_string(r->code) + " from " + url;
    if (r->code == 401 && token_from_credential_) {
      // The realm took the credential, yet its token does not open the repository.
      const std::string reason = RegistryMessage(r->error_body);
      return Status::PermissionDenied(prefix + "registry " + ref_.domain + " gives " +
                                      CredentialName() + " no access to " + ref_.repository +
                                      ": it does not exist, or may not be pulled by them (" +
                                      answer + (reason.empty() ? "" : " (" + reason + ")") + ")");
    }
    return r->code == 401 ? Unauthorized(*r, prefix, answer) : HttpError(*r, prefix + answer);
  }

  // The Status for the failed answer `r`; `msg` says what was asked and where.
  static Status HttpError(const Response& r, const std::string& msg) {
    std::string reason = RegistryMessage(r.error_body);
    std::string full = msg + (reason.empty() ? "" : " (" + reason + ")");
    if (r.code == 404) return Status::NotFound(full);
    if (r.code == 401 || r.code == 403) return Status::PermissionDenied(full);
    if (r.code >= 500 || r.code == 429) return Status::Unavailable(full);
    return Status::InvalidArgument(full);
  }

  // The Status for a 401 `r` that authentication did not get past: the credential was
  // refused, or there is none for the registry (and where it would go). `what`:
  // "401 from <url>".
  Status Unauthorized(const Response& r, const std::string& prefix, const std::string& what) const {
    const std::string reason = RegistryMessage(r.error_body);
    const std::string answer = what + (reason.empty() ? "" : " (" + reason + ")");
    const std::string& registry = ref_.domain;
    if (options_.credential) {
      return Status::PermissionDenied(prefix + "registry " + registry +
                                      " refused the credentials of " + CredentialName() + " (" +
                                      answer + ")");
    }
    const std::string where =
        options_.auth_file.empty()
            ? "none are configured: give them in a Docker config.json, petreld --registry-auth FILE"
            : options_.auth_file + " has none for it";
    return Status::PermissionDenied(prefix + answer + ": registry " + registry +
                                    " wants credentials and " + where + " (auths[\"" + registry +
                                    "\"])");
  }

  // Who the credential is, for messages: the user, or "the identity token".
  std::string CredentialName() const {
    return options_.credential->user.empty() ? "the identity token"
                                             : Escape(options_.credential->user);
  }

  // " (from FILE)" when the credentials came from a file.
  std::string CredentialSource() const {
    return options_.auth_file.empty() ? "" : " (from " + options_.auth_file + ")";
  }

  // OK when the credential may be sent to `url`: over HTTPS, or to a loopback host.
  Status MaySendCredential(const std::string& url, const std::string& prefix) const {
    const std::string host = UrlHost(url);
    if (url.compare(0, 8, "https://") == 0 || IsLoopbackHost(host)) return Status::OK();
    return Status::PermissionDenied(prefix + "the credentials for registry " + ref_.domain +
                                    " are not sent over plain HTTP to " + host +
                                    " (only over HTTPS, or to a loopback address)");
  }

  // Asks the realm of Bearer `challenge` for a pull token into token_: with the
  // credential as basic auth when there is one, else anonymously.
  Status FetchToken(const AuthChallenge& challenge, const std::string& prefix) {
    Result<std::string> url = TokenUrl(challenge, ref_.repository);
    if (!url.ok()) return Status::PermissionDenied(prefix + "401 with " + url.status().message());
    const std::string realm = challenge.params.at("realm");
    if (options_.credential) PETREL_RETURN_IF_ERROR(MaySendCredential(*url, prefix));
    // An identity token is posted to the realm itself (OAuth2), the rest asks with a GET.
    const bool oauth = options_.credential && !options_.credential->identity_token.empty();
    const std::string form =
        oauth ? TokenForm(challenge, ref_.repository, options_.credential->identity_token) : "";
    std::string body;
    Response r;
    PETREL_RETURN_IF_ERROR(Perform(
        oauth ? realm : *url, false,
        [&](const char* data, size_t n) {
          if (body.size() + n > kMaxTokenResponse) {
            return Status::InvalidArgument(prefix + "token from " + realm + ": larger than " +
                                           std::to_string(kMaxTokenResponse) + " bytes");
          }
          body.append(data, n);
          return Status::OK();
        },
        &r, prefix + "token: ", 0, nullptr, Auth::kRealm, form));
    const std::string answer = "token: " + std::to_string(r.code) + " from " + realm;
    if (oauth && (r.code == 400 || r.code == 401)) {  // OAuth2 says invalid_grant with a 400
      return Status::PermissionDenied(prefix + "registry " + ref_.domain +
                                      " refused the identity token" + CredentialSource() + " (" +
                                      answer + ")");
    }
    if (r.code == 401) return Unauthorized(r, prefix, answer);
    if (r.code < 200 || r.code > 299) return HttpError(r, prefix + answer);
    Result<json> j = ParseJson(body, "token");
    std::string token;
    if (j.ok() && j->is_object()) {
      for (const char* key : {"token", "access_token"}) {
        if (token.empty() && j->contains(key) && (*j)[key].is_string()) {
          token = (*j)[key].get<std::string>();
        }
      }
    }
    if (!IsPrintableToken(token)) {
      return Status::PermissionDenied(prefix + "token from " + realm + ": no token in the answer");
    }
    token_ = token;
    token_from_credential_ = options_.credential.has_value();
    return Status::OK();
  }

  // One GET of `url` (with the Accept header of manifests when `manifest`, and what
  // `auth` says). OK with r->code set whenever an answer came.
  Status Perform(const std::string& url, bool manifest,
                 const std::function<Status(const char*, size_t)>& sink, Response* r,
                 const std::string& prefix, uint64_t from, const std::function<void()>* restart,
                 Auth auth, const std::string& form = std::string()) {
    // One handle for every request of this source: its connections stay open between
    // them, so a pull's manifest, config and layers cost one connection (and one TLS
    // handshake) per host, not one each.
    if (curl_) {
      PETREL_CURL(curl_easy_reset)(curl_.get());
    } else {
      curl_.reset(PETREL_CURL(curl_easy_init)());
      if (!curl_) return Status::IOError(prefix + "curl_easy_init failed");
    }
    const RegistryCredential* basic = nullptr;
    std::string bearer;
    if (auth == Auth::kRegistry && basic_) {
      basic = &*options_.credential;
    } else if (auth == Auth::kRegistry && !token_.empty()) {
      bearer = "Authorization: Bearer " + token_;
    } else if (auth == Auth::kRealm && options_.credential &&
               options_.credential->identity_token.empty()) {
      basic = &*options_.credential;
    }
    curl_slist* list = nullptr;
    if (manifest) list = PETREL_CURL(curl_slist_append)(list, kManifestAccept);
    if (!bearer.empty()) list = PETREL_CURL(curl_slist_append)(list, bearer.c_str());
    const std::string range = "Range: bytes=" + std::to_string(from) + "-";
    if (from > 0) list = PETREL_CURL(curl_slist_append)(list, range.c_str());
    std::unique_ptr<curl_slist, SlistFree> headers(list);
    char error[CURL_ERROR_SIZE] = {0};
    Transfer t;
    t.curl = curl_.get();
    t.sink = &sink;
    t.response = r;
    t.range_from = from;
    t.restart = restart;
    CURL* c = curl_.get();
    auto set = PETREL_CURL(curl_easy_setopt);
    set(c, CURLOPT_URL, url.c_str());
    set(c, CURLOPT_HTTPHEADER, headers.get());
    set(c, CURLOPT_PROTOCOLS_STR, protocols_.c_str());
    set(c, CURLOPT_REDIR_PROTOCOLS_STR, protocols_.c_str());
    set(c, CURLOPT_FOLLOWLOCATION, 1L);  // blobs are often served from elsewhere
    set(c, CURLOPT_MAXREDIRS, 5L);
    // libcurl's default, said: neither basic auth nor an "Authorization:" header goes
    // to another host (or port, or scheme) than the URL's after a redirect.
    set(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    if (basic != nullptr) {
      set(c, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      set(c, CURLOPT_USERNAME, basic->user.c_str());
      set(c, CURLOPT_PASSWORD, basic->password.c_str());
    }
    if (!form.empty()) {  // a POST of the form (libcurl's default type, urlencoded)
      set(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(form.size()));
      set(c, CURLOPT_POSTFIELDS, form.c_str());
    }
    if (!options_.ca_file.empty()) set(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    set(c, CURLOPT_NOSIGNAL, 1L);
    set(c, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
    set(c, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytes);
    set(c, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
    set(c, CURLOPT_USERAGENT, "petrel");
    set(c, CURLOPT_BUFFERSIZE, kBufferSize);  // fewer, larger writes of a blob
    set(c, CURLOPT_ERRORBUFFER, error);
    set(c, CURLOPT_WRITEFUNCTION, OnBody);
    set(c, CURLOPT_WRITEDATA, &t);
    set(c, CURLOPT_HEADERFUNCTION, OnHeader);
    set(c, CURLOPT_HEADERDATA, &t);
    if (options_.cancelled) {
      set(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
      set(c, CURLOPT_XFERINFODATA, &options_.cancelled);
      set(c, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode rc = PETREL_CURL(curl_easy_perform)(c);
    if (!t.sink_status.ok()) return t.sink_status;
    if (rc == CURLE_ABORTED_BY_CALLBACK && Cancelled()) {
      return Status::Unavailable(prefix + url + ": pull cancelled");
    }
    if (rc != CURLE_OK) {
      std::string msg = error[0] != '\0' ? error : PETREL_CURL(curl_easy_strerror)(rc);
      return Status::Unavailable(prefix + url + ": " + msg);
    }
    PETREL_CURL(curl_easy_getinfo)(c, CURLINFO_RESPONSE_CODE, &r->code);
    return Status::OK();
  }

  bool Cancelled() const { return options_.cancelled && options_.cancelled(); }

  const ImageReference ref_;
  const RegistryOptions options_;
  std::string base_;       // "http(s)://host[:port]/v2/<repository>/"
  std::string protocols_;  // libcurl's allowed protocols, also for redirects
  std::string blob_dir_;
  std::set<std::string> manifests_;       // digests to fetch from /manifests/
  std::set<std::string> verified_;        // blobs in the cache this source wrote or checked
  std::string token_;                     // a Bearer token the registry's realm gave, or ""
  bool basic_ = false;                    // a Basic challenge came: send the credential
  bool token_from_credential_ = false;    // token_ was given for the credential
  std::unique_ptr<CURL, CurlFree> curl_;  // made by the first request, reset by each
};

}  // namespace

Status MakeRegistryDirs(const std::string& store_dir) {
  PETREL_RETURN_IF_ERROR(MakeDurableDirs(store_dir + "/" + kRegistryBlobDir, 0700));
  return MakeDurableDirs(store_dir + "/" + kRegistryPartialDir, 0700);
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  if (host.compare(0, 4, "127.") != 0) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      dots++;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

std::unique_ptr<ImageSource> RegistrySource(const ImageReference& ref,
                                            const RegistryOptions& options) {
  return std::make_unique<Source>(ref, options);
}

}  // namespace petrel::internal
