#include "lib/image/curl_lib.h"

#include <cctype>
#include <mutex>

#include "lib/image/dyn_lib.h"

namespace petrel::internal {
namespace {

// Every libcurl function petrel calls. A new call site needs its name here.
[[maybe_unused]] constexpr const char* kFunctions[] = {
    "curl_global_init",  "curl_global_cleanup", "curl_easy_init",    "curl_easy_cleanup",
    "curl_easy_setopt",  "curl_easy_perform",   "curl_easy_getinfo", "curl_easy_strerror",
    "curl_slist_append", "curl_slist_free_all", "curl_easy_reset",
};
[[maybe_unused]] constexpr int kCount = sizeof(kFunctions) / sizeof(kFunctions[0]);

Status GlobalInit() {
  CURLcode rc = PETREL_CURL(curl_global_init)(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    return Status::IOError(std::string("curl_global_init: ") + PETREL_CURL(curl_easy_strerror)(rc));
  }
  return Status::OK();
}

#ifdef PETREL_DLOPEN_LIBCURL
void GlobalCleanup() { PETREL_CURL(curl_global_cleanup)(); }

DynLib& Lib() {
  static DynLib lib("libcurl.so.4", "libcurl4", kFunctions, kCount, GlobalInit, GlobalCleanup);
  return lib;
}
#endif

}  // namespace

#ifdef PETREL_DLOPEN_LIBCURL

CurlUse::CurlUse() : status_(Lib().Acquire()) {}

CurlUse::~CurlUse() {
  if (status_.ok()) Lib().Release();
}

int CurlIndex(const char* name) { return Lib().Index(name); }

void* CurlSymbolAt(int index) { return Lib().At(index); }

#else

// Linked: initialized once, never cleaned up (other code in the process may use it).
CurlUse::CurlUse() {
  static const Status init = GlobalInit();
  status_ = init;
}
CurlUse::~CurlUse() = default;

#endif

void CurlFree::operator()(CURL* c) const { PETREL_CURL(curl_easy_cleanup)(c); }

void SlistFree::operator()(curl_slist* l) const { PETREL_CURL(curl_slist_free_all)(l); }

bool HeaderValue(std::string_view line, std::string_view name, std::string* value) {
  if (line.size() <= name.size()) return false;
  for (size_t i = 0; i < name.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  std::string_view v = line.substr(name.size());
  size_t b = v.find_first_not_of(" \t\r\n");
  size_t e = v.find_last_not_of(" \t\r\n");
  *value = b == std::string_view::npos ? "" : std::string(v.substr(b, e - b + 1));
  return true;
}

}  // namespace petrel::internal
