/* SPDX-License-Identifier: MIT */
#include "qd-dtype.h"
#include "qd-fp8.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} dtypes[QD_DT_COUNT] = {
    [QD_DT_BOOL] = {"BOOL", 8},        [QD_DT_U8] = {"U8", 8},
    [QD_DT_I8] = {"I8", 8},            [QD_DT_I16] = {"I16", 16},
    [QD_DT_U16] = {"U16", 16},         [QD_DT_I32] = {"I32", 32},
    [QD_DT_U32] = {"U32", 32},         [QD_DT_I64] = {"I64", 64},
    [QD_DT_U64] = {"U64", 64},         [QD_DT_F16] = {"F16", 16},
    [QD_DT_BF16] = {"BF16", 16},       [QD_DT_F32] = {"F32", 32},
    [QD_DT_F64] = {"F64", 64},         [QD_DT_C64] = {"C64", 64},
    [QD_DT_F8_E4M3] = {"F8_E4M3", 8},  [QD_DT_F8_E5M2] = {"F8_E5M2", 8},
    [QD_DT_F8_E8M0] = {"F8_E8M0", 8},  [QD_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [QD_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8}, [QD_DT_F4] = {"F4", 4},
    [QD_DT_F6_E2M3] = {"F6_E2M3", 6},  [QD_DT_F6_E3M2] = {"F6_E3M2", 6},
};

const char *qd_dtype_name(qd_dtype dt) { return (unsigned)dt < QD_DT_COUNT ? dtypes[dt].name : "?"; }

int qd_dtype_from_name(const char *name, qd_dtype *out) {
    for (int i = 0; i < QD_DT_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (qd_dtype)i;
            return 0;
        }
    return -1;
}

unsigned qd_dtype_bits(qd_dtype dt) { return (unsigned)dt < QD_DT_COUNT ? dtypes[dt].bits : 0; }

int qd_dtype_is_float(qd_dtype dt) {
    return dt == QD_DT_F16 || dt == QD_DT_BF16 || dt == QD_DT_F32 || dt == QD_DT_F64;
}

float qd_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t qd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                           /* nearest even */
    return (uint16_t)(u >> 16);
}

float qd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t qd_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;
    if (au > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (au >= 0x477ff000u) return sign | 0x7c00u; /* overflow (>= 65520) -> Inf */
    if (au < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        float mag;
        memcpy(&mag, &au, 4);
        /* scaling by 2^24 is exact; nearbyintf rounds half to even in the default mode */
        return sign | (uint16_t)nearbyintf(mag * 16777216.0f);
    }
    uint32_t r = au + 0xfffu + ((au >> 13) & 1u) - ((127u - 15u) << 23);
    return sign | (uint16_t)(r >> 13);
}

float qd_e8m0_to_f32(uint8_t code) { return code == 0xffu ? NAN : ldexpf(1.0f, (int)code - 127); }

void qd_to_f32(qd_dtype dt, const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    switch (dt) {
    case QD_DT_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = qd_e4m3_to_f32(p[i]);
        break;
    case QD_DT_F8_E8M0:
        for (size_t i = 0; i < n; i++) dst[i] = qd_e8m0_to_f32(p[i]);
        break;
    case QD_DT_F32:
        memcpy(dst, src, n * 4);
        break;
    case QD_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qd_bf16_to_f32(h);
        }
        break;
    case QD_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qd_f16_to_f32(h);
        }
        break;
    case QD_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        for (size_t i = 0; i < n; i++) dst[i] = NAN;
        break;
    }
}

void qd_from_f32(qd_dtype dt, const float *src, void *dst, size_t n) {
    unsigned char *p = dst;
    switch (dt) {
    case QD_DT_F32:
        memcpy(dst, src, n * 4);
        break;
    case QD_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = qd_f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case QD_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = qd_f32_to_f16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case QD_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d = src[i];
            memcpy(p + 8 * i, &d, 8);
        }
        break;
    default:
        break;
    }
}
