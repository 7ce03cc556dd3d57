#include <seccomp.h>
#include <stdint.h>

// SCMP_ACT_* with arguments are macros Swift cannot import.
static inline uint32_t stigmer_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t stigmer_scmp_act_trace(uint16_t m) { return SCMP_ACT_TRACE(m); }
