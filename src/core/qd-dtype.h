/* SPDX-License-Identifier: MIT
 * qd-dtype.h - element types of stored tensors and conversion of the float ones to/from fp32.
 *
 * Names follow safetensors ("BF16", "F32", ...). bits is the storage width (F4 = 4, F6_* = 6).
 * Conversions read/write unaligned little-endian memory (memcpy), round to nearest even, keep NaN/Inf.
 */
#ifndef QD_DTYPE_H
#define QD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QD_DT_BOOL, QD_DT_U8, QD_DT_I8, QD_DT_I16, QD_DT_U16, QD_DT_I32, QD_DT_U32, QD_DT_I64, QD_DT_U64,
    QD_DT_F16, QD_DT_BF16, QD_DT_F32, QD_DT_F64, QD_DT_C64, QD_DT_F8_E4M3, QD_DT_F8_E5M2,
    QD_DT_F8_E8M0, QD_DT_F8_E4M3FNUZ, QD_DT_F8_E5M2FNUZ, QD_DT_F4, QD_DT_F6_E2M3, QD_DT_F6_E3M2,
    QD_DT_COUNT
} qd_dtype;

const char *qd_dtype_name(qd_dtype dt);
/* -1 if the name is not a safetensors dtype */
int qd_dtype_from_name(const char *name, qd_dtype *out);
unsigned qd_dtype_bits(qd_dtype dt);
/* true for F16, BF16, F32, F64: the types qd_to_f32 / qd_from_f32 convert */
int qd_dtype_is_float(qd_dtype dt);

float qd_bf16_to_f32(uint16_t h);
uint16_t qd_f32_to_bf16(float f);
float qd_f16_to_f32(uint16_t h);
uint16_t qd_f32_to_f16(float f);

/* The E8M0 block scale of FP8 source checkpoints (docs/formats.md "FP8 sources"): 2^(code-127), 0xff
 * NaN, exact in fp32. E4M3 codes: qd-fp8.h. */
float qd_e8m0_to_f32(uint8_t code);

/* Convert n elements of a float dtype (F16/BF16/F32/F64) at src (any alignment) to fp32 and back.
 * qd_to_f32 also decodes F8_E4M3 and F8_E8M0 (not float dtypes for qd_dtype_is_float: they are only
 * ever read through their scales); any other dtype gives NaN. */
void qd_to_f32(qd_dtype dt, const void *src, float *dst, size_t n);
void qd_from_f32(qd_dtype dt, const float *src, void *dst, size_t n);

#endif
