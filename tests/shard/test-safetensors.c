/* SPDX-License-Identifier: MIT
 * The safetensors reader against hand-built files: one valid file whose bytes we lay out ourselves
 * (independent of qdist's writer), and one crafted bad file per validation rule of formats.md
 * section A. Each bad file must fail with one message naming the file (and the tensor where there
 * is one), never crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-fs.h"
#include "qd-log.h"
#include "qd-safetensors.h"
#include "qd-test.h"

static char tmpdir[256];

/* u64 LE length + header + data, exactly as the format describes */
static void write_raw(const char *path, const char *header, uint64_t hlen_field, const void *data, size_t dlen) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen_field >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (dlen) fwrite(data, 1, dlen, f);
    fclose(f);
}

static void write_st(const char *path, const char *header, const void *data, size_t dlen) {
    write_raw(path, header, strlen(header), data, dlen);
}

static const char *tpath(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static void test_valid_file(void) {
    /* a: F32 [2,2] at [0,16); b: BF16 [3] at [16,22); c: U8 [] (scalar) at [22,23);
     * d: I64 [0,4] empty at [23,23); e: F4 [4] at [23,25) - unaligned data on purpose */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[22,23]},"
                      "\"d\":{\"dtype\":\"I64\",\"shape\":[0,4],\"data_offsets\":[23,23]},"
                      "\"e\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[23,25]}}   ";
    unsigned char data[25];
    float a[4] = {1.5f, -2.0f, 3.25f, 0.0f};
    memcpy(data, a, 16);
    uint16_t b[3] = {0x3f80, 0xc000, 0x4049}; /* 1.0, -2.0, 3.140625 */
    memcpy(data + 16, b, 6);
    data[22] = 7;
    data[23] = 0x21;
    data[24] = 0x43;
    char path[512];
    snprintf(path, sizeof path, "%s", tpath("valid.safetensors"));
    write_st(path, hdr, data, sizeof data);

    qd_st_file *f = NULL;
    QD_EXPECT_EQ_INT(qd_st_open(path, 1, &f), QD_OK);
    if (!f) return;
    QD_EXPECT_EQ_INT(f->ntensors, 5);
    QD_EXPECT_EQ_INT(f->nmeta, 2);
    QD_EXPECT_EQ_INT(f->data_start, 8 + strlen(hdr));
    const qd_st_tensor *ta = qd_st_find(f, "a"), *tc = qd_st_find(f, "c"), *td = qd_st_find(f, "d");
    const qd_st_tensor *te = qd_st_find(f, "e");
    QD_EXPECT(ta && tc && td && te);
    if (ta && tc && td && te) {
        QD_EXPECT_EQ_INT(ta->ndim, 2);
        QD_EXPECT_EQ_INT(ta->numel, 4);
        QD_EXPECT_EQ_INT(ta->file_offset, 8 + strlen(hdr));
        QD_EXPECT_EQ_INT(tc->ndim, 0);
        QD_EXPECT_EQ_INT(tc->numel, 1);
        QD_EXPECT_EQ_INT(td->numel, 0);
        QD_EXPECT_EQ_INT(te->nbytes, 2);
        QD_EXPECT_EQ_INT(f->map[tc->file_offset], 7);
    }
    qd_st_close(f);

    /* through the checkpoint API: single file dir, f32 conversion mapped and meta-only */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/ckpt-valid", tmpdir);
    qd_mkdir_p(dir);
    char dst[600];
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    write_st(dst, hdr, data, sizeof data);
    for (int map = 0; map <= 1; map++) {
        qd_checkpoint *c = NULL;
        QD_EXPECT_EQ_INT(qd_ckpt_open(dir, map, &c), QD_OK);
        if (!c) continue;
        QD_EXPECT_EQ_INT(c->ntensors, 5);
        QD_EXPECT(strcmp(c->tensors[0]->name, "a") == 0 && strcmp(c->tensors[4]->name, "e") == 0);
        float out[4];
        QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "a"), out), QD_OK);
        QD_EXPECT_NEAR(out[0], 1.5, 0);
        QD_EXPECT_NEAR(out[2], 3.25, 0);
        QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "b"), out), QD_OK);
        QD_EXPECT_NEAR(out[0], 1.0, 0);
        QD_EXPECT_NEAR(out[1], -2.0, 0);
        QD_EXPECT_NEAR(out[2], 3.140625, 0);
        unsigned char raw[2];
        QD_EXPECT_EQ_INT(qd_ckpt_read_raw(c, qd_ckpt_find(c, "e"), raw), QD_OK);
        QD_EXPECT(raw[0] == 0x21 && raw[1] == 0x43);
        QD_EXPECT(map ? qd_ckpt_data(c, qd_ckpt_find(c, "e")) != NULL : qd_ckpt_data(c, qd_ckpt_find(c, "e")) == NULL);
        QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "c"), out), QD_ERR_UNSUPPORTED);
        QD_EXPECT(qd_ckpt_find(c, "zz") == NULL);
        qd_ckpt_close(c);
    }
}

/* Expect the file to be refused with `st`, the message naming the file and containing `needle`. */
static void expect_bad(const char *name, qd_status want, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s", tpath(name));
    for (int map = 0; map <= 1; map++) {
        qd_clear_error();
        qd_st_file *f = NULL;
        qd_status st = qd_st_open(path, map, &f);
        if (st != want) fprintf(stderr, "  file %s: got status %s\n", name, qd_status_name(st));
        QD_EXPECT_EQ_INT(st, want);
        QD_EXPECT(f == NULL);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), path);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), needle);
        qd_st_close(f);
    }
    /* the same bytes parsed from memory (the fuzz entry point) give the same verdict */
    char *buf;
    size_t len;
    if (qd_read_file(path, 1u << 30, &buf, &len) == QD_OK) {
        qd_st_file *f = NULL;
        qd_clear_error();
        QD_EXPECT_EQ_INT(qd_st_parse_mem(buf, len, name, &f), want);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), needle);
        qd_st_close(f);
        free(buf);
    }
}

static const char ok_hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
static const unsigned char eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};

static void test_bad_files(void) {
    /* truncated: data shorter than the header says */
    write_st(tpath("truncated.safetensors"), ok_hdr, eight, 5);
    expect_bad("truncated.safetensors", QD_ERR_FORMAT, "truncated");
    /* too short to even hold the length */
    FILE *f = fopen(tpath("tiny.safetensors"), "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_bad("tiny.safetensors", QD_ERR_FORMAT, "too short");
    /* header length beyond the end of the file */
    write_raw(tpath("hdrlen.safetensors"), ok_hdr, 4096, eight, 8);
    expect_bad("hdrlen.safetensors", QD_ERR_FORMAT, "runs past the end");
    /* N > 1e8 */
    write_raw(tpath("hugehdr.safetensors"), ok_hdr, 100000001ull, eight, 8);
    expect_bad("hugehdr.safetensors", QD_ERR_FORMAT, "exceeds the limit");
    /* header not starting with '{' */
    write_st(tpath("nobrace.safetensors"), " {\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight, 8);
    expect_bad("nobrace.safetensors", QD_ERR_FORMAT, "does not start with '{'");
    /* not JSON */
    write_st(tpath("badjson.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", eight, 8);
    expect_bad("badjson.safetensors", QD_ERR_FORMAT, "not valid JSON");
    /* garbage after the object (padding may only be spaces) */
    write_st(tpath("afterjson.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx", eight, 8);
    expect_bad("afterjson.safetensors", QD_ERR_FORMAT, "after the header");
    /* invalid UTF-8 in a name */
    write_st(tpath("utf8.safetensors"), "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight, 8);
    expect_bad("utf8.safetensors", QD_ERR_FORMAT, "UTF-8");
    /* a raw control byte (here NUL) inside a name: not JSON, and it would cut the name short */
    {
        static const char nul_hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"v\0x\":1}";
        FILE *fn = fopen(tpath("nul.safetensors"), "wb");
        unsigned char l8[8] = {(unsigned char)(sizeof nul_hdr - 1)};
        fwrite(l8, 1, 8, fn);
        fwrite(nul_hdr, 1, sizeof nul_hdr - 1, fn);
        fwrite(eight, 1, 8, fn);
        fclose(fn);
        expect_bad("nul.safetensors", QD_ERR_FORMAT, "control byte 0x00");
    }
    /* overlapping offsets */
    write_st(tpath("overlap.safetensors"),
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", eight, 6);
    expect_bad("overlap.safetensors", QD_ERR_FORMAT, "overlap");
    /* a gap between tensors */
    write_st(tpath("gap.safetensors"),
             "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
             "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", eight, 6);
    expect_bad("gap.safetensors", QD_ERR_FORMAT, "tensor 'b': gap of 2 bytes");
    /* a hole at the start */
    write_st(tpath("hole0.safetensors"), "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", eight, 4);
    expect_bad("hole0.safetensors", QD_ERR_FORMAT, "tensor 'a'");
    /* unknown dtype */
    write_st(tpath("dtype.safetensors"), "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight, 8);
    expect_bad("dtype.safetensors", QD_ERR_FORMAT, "tensor 'w': unknown dtype 'F12'");
    /* byte size not matching the shape */
    write_st(tpath("size.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", eight, 8);
    expect_bad("size.safetensors", QD_ERR_FORMAT, "tensor 'w': data_offsets [0, 8) hold 8 bytes but F32 with 3 elements needs 12");
    /* shape overflowing 64 bits */
    write_st(tpath("overflow.safetensors"),
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", eight, 8);
    expect_bad("overflow.safetensors", QD_ERR_FORMAT, "tensor 'w'");
    /* duplicate key */
    write_st(tpath("dup.safetensors"),
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
             "\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", eight, 8);
    expect_bad("dup.safetensors", QD_ERR_FORMAT, "tensor 'w': duplicate key");
    /* trailing bytes after the last tensor */
    write_st(tpath("trailing.safetensors"), "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", eight, 8);
    expect_bad("trailing.safetensors", QD_ERR_FORMAT, "4 trailing bytes");
    /* end before begin */
    write_st(tpath("reversed.safetensors"), "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", eight, 4);
    expect_bad("reversed.safetensors", QD_ERR_FORMAT, "tensor 'w'");
    /* negative / fractional shape, missing fields, wrong types */
    write_st(tpath("negshape.safetensors"), "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", eight, 0);
    expect_bad("negshape.safetensors", QD_ERR_FORMAT, "tensor 'w': shape[0]");
    write_st(tpath("nooffs.safetensors"), "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", eight, 0);
    expect_bad("nooffs.safetensors", QD_ERR_FORMAT, "tensor 'w': \"data_offsets\"");
    write_st(tpath("notobj.safetensors"), "{\"w\":[1,2]}", eight, 0);
    expect_bad("notobj.safetensors", QD_ERR_FORMAT, "tensor 'w'");
    write_st(tpath("meta.safetensors"), "{\"__metadata__\":{\"format\":1}}", eight, 0);
    expect_bad("meta.safetensors", QD_ERR_FORMAT, "__metadata__");
    /* F4 with an odd element count cannot fill whole bytes */
    write_st(tpath("f4odd.safetensors"), "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", eight, 1);
    expect_bad("f4odd.safetensors", QD_ERR_FORMAT, "tensor 'w'");
    /* too many dimensions for qdist (valid in the format, refused as unsupported) */
    write_st(tpath("dims.safetensors"),
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", eight, 1);
    expect_bad("dims.safetensors", QD_ERR_UNSUPPORTED, "tensor 'w'");
    /* missing file */
    qd_st_file *f2 = NULL;
    QD_EXPECT_EQ_INT(qd_st_open(tpath("nope.safetensors"), 0, &f2), QD_ERR_IO);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "nope.safetensors");
}

/* empty and zero-size cases the format allows */
static void test_edge_valid(void) {
    write_st(tpath("empty.safetensors"), "{}", NULL, 0);
    qd_st_file *f = NULL;
    QD_EXPECT_EQ_INT(qd_st_open(tpath("empty.safetensors"), 1, &f), QD_OK);
    if (f) QD_EXPECT_EQ_INT(f->ntensors, 0);
    qd_st_close(f);
    /* several zero-size tensors at the same offset tile correctly */
    write_st(tpath("zeros.safetensors"),
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
             "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
             "\"c\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[2,2]}}   \n", eight, 2);
    f = NULL;
    QD_EXPECT_EQ_INT(qd_st_open(tpath("zeros.safetensors"), 0, &f), QD_OK);
    if (f) QD_EXPECT_EQ_INT(f->ntensors, 3);
    qd_st_close(f);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/qd-test-st-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    QD_RUN(test_valid_file);
    QD_RUN(test_bad_files);
    QD_RUN(test_edge_valid);
    qd_rm_rf(tmpdir);
    return QD_TEST_END();
}
