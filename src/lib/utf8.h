/* utf8 — encoding one code point (no validation: the caller passes a
 * Unicode scalar value, <= 0x10FFFF and not a surrogate). */
#ifndef CORREIO_LIB_UTF8_H
#define CORREIO_LIB_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Write cp as UTF-8 into out; returns the number of octets (1..4). */
size_t utf8_encode(uint32_t cp, uint8_t out[4]);

#endif
