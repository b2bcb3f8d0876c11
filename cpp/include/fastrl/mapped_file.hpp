// A file mapped into memory (POSIX mmap, MAP_SHARED): field storage for buffers larger than RAM.
// The kernel pages rows in and out; what the buffer writes reaches the file (at the latest on
// flush or unmap). Regions are handed out as shared_ptrs that keep the mapping alive, so numpy
// views of a field outlive the buffer as they do with heap storage.
//
// Costs: mapping O(1); flush O(dirty pages). Thread safety: the mapping is immutable; flush may
// run concurrently with reads.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define FASTRL_HAS_MMAP 1
#endif

namespace fastrl {

class MappedFile {
 public:
  // Maps bytes [offset, offset + length) of `path` (offset a multiple of the page size). With
  // `create`, the file must not exist and is created sparse with size offset + length; otherwise
  // it must exist and be at least that long.
  MappedFile(const std::string& path, std::uint64_t offset, std::uint64_t length, bool create) : length_(length) {
#ifdef FASTRL_HAS_MMAP
    if (length == 0) throw std::invalid_argument("a mapped region must not be empty");
    if (offset % static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) != 0)
      throw std::invalid_argument("mapped offset must be a multiple of the page size");
    const int fd = create ? ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)
                          : ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail("cannot open " + path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) { ::close(fd); fail("cannot stat " + path); }
    if (create) {
      if (::ftruncate(fd, static_cast<off_t>(offset + length)) != 0) {
        const int e = errno;
        ::close(fd);
        ::unlink(path.c_str());
        errno = e;
        fail("cannot size " + path);
      }
    } else if (static_cast<std::uint64_t>(st.st_size) < offset + length) {
      ::close(fd);
      throw std::invalid_argument(path + " is too short for the buffer it declares (" + std::to_string(st.st_size) +
                                  " bytes, need " + std::to_string(offset + length) + ")");
    }
    void* p = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(offset));
    ::close(fd);  // the mapping keeps the file open
    if (p == MAP_FAILED) {
      const int e = errno;
      if (create) ::unlink(path.c_str());
      errno = e;
      fail("cannot map " + path);
    }
    data_ = static_cast<std::uint8_t*>(p);
#else
    (void)path; (void)offset; (void)create;
    throw std::runtime_error("memory-mapped storage needs a POSIX system");
#endif
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
#ifdef FASTRL_HAS_MMAP
    if (data_) ::munmap(data_, static_cast<std::size_t>(length_));
#endif
  }

  std::uint8_t* data() const { return data_; }
  std::uint64_t length() const { return length_; }

  // Writes the dirty pages to the file and waits for it.
  void flush() const {
#ifdef FASTRL_HAS_MMAP
    if (::msync(data_, static_cast<std::size_t>(length_), MS_SYNC) != 0) fail("msync failed");
#endif
  }

  // Region [offset, offset + bytes) of the mapping, sharing ownership of it.
  static std::shared_ptr<std::uint8_t> region(const std::shared_ptr<MappedFile>& file, std::uint64_t offset,
                                              std::uint64_t bytes) {
    if (offset + bytes > file->length_)
      throw std::invalid_argument("mapped region [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) +
                                  ") is outside the mapping of " + std::to_string(file->length_) + " bytes");
    return std::shared_ptr<std::uint8_t>(file, file->data_ + offset);
  }

 private:
  [[noreturn]] static void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
  }

  std::uint8_t* data_ = nullptr;
  std::uint64_t length_ = 0;
};

}  // namespace fastrl
