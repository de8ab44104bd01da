// libcurl, loaded only while an image is being pulled from a registry.
//
// Debian's libcurl is built on OpenSSL; the two take 6-8 MiB of RSS that a crun node
// which pulls once and then runs for months should not keep. With PETREL_DLOPEN_LIBCURL
// (the default) libcurl is dlopen()ed by a CurlUse and dlclose()d when the last one
// ends; without it (static firmware builds) it is linked and CurlUse only runs
// curl_global_init once.
//
// Every call into libcurl goes through PETREL_CURL(name)(args...).
#ifndef PETREL_LIB_IMAGE_CURL_LIB_H_
#define PETREL_LIB_IMAGE_CURL_LIB_H_

#include <curl/curl.h>

#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

// Holds libcurl loaded (and globally initialized) while alive. REQUIRES: status().ok()
// before any PETREL_CURL call, and every curl handle cleaned up before the last CurlUse
// ends. Thread-safe.
class CurlUse {
 public:
  CurlUse();
  ~CurlUse();
  CurlUse(const CurlUse&) = delete;
  CurlUse& operator=(const CurlUse&) = delete;
  // IOError naming the library and dlerror() when it could not be loaded.
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// The index of a libcurl function in the loaded table; the address at an index.
int CurlIndex(const char* name);
void* CurlSymbolAt(int index);

// Deleters, for std::unique_ptr, of an easy handle and of a header list.
struct CurlFree {
  void operator()(CURL* c) const;
};
struct SlistFree {
  void operator()(curl_slist* l) const;
};

// The value of header `name` (lowercase, with the colon) when `line`, one line as
// libcurl hands it to a CURLOPT_HEADERFUNCTION, is that header; without the blanks
// around it and the line's end.
bool HeaderValue(std::string_view line, std::string_view name, std::string* value);

}  // namespace petrel::internal

#ifdef PETREL_DLOPEN_LIBCURL
#define PETREL_CURL(f)                                                    \
  (reinterpret_cast<decltype(&::f)>(::petrel::internal::CurlSymbolAt([] { \
    static const int index = ::petrel::internal::CurlIndex(#f);           \
    return index;                                                         \
  }())))
#else
#define PETREL_CURL(f) ::f
#endif

#endif  // PETREL_LIB_IMAGE_CURL_LIB_H_
