/* SPDX-License-Identifier: MIT
 * test-h5stage-damage.c - the staging directory after a crash or damage: resume lists exactly the
 * staged blocks, interrupted writes are removed and ignored, corrupt or damaged block files are
 * reported in one line naming the file (never read as a block). The block itself: test-h5stage.c. */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5stage-test-util.h"
#include "qd-fs.h"
#include "qd-h5stage.h"
#include "qd-log.h"
#include "qd-test.h"

static void touch(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_resume_and_leftovers(void) {
    char dir[300], path[400];
    subdir(dir, sizeof dir, "resume");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    int64_t staged[3] = {0, 2, 105};
    for (int i = 0; i < 3; i++) {
        qd_staged_block b = make_block(staged[i]);
        QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
        free_block(&b);
    }
    /* a crash in the middle of writing block 3: a real HDF5 start, cut short */
    qd_staged_block b3 = make_block(3);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b3), QD_OK);
    free_block(&b3);
    char fin[400];
    snprintf(fin, sizeof fin, "%s/block-00003.h5", dir);
    snprintf(path, sizeof path, "%s/block-00003.h5.tmp", dir);
    QD_EXPECT_EQ_INT(rename(fin, path), 0);
    QD_EXPECT_EQ_INT(truncate(path, 1000), 0);
    snprintf(path, sizeof path, "%s/block-00004.h5.tmp", dir);
    touch(path, "garbage");
    snprintf(path, sizeof path, "%s/fingerprint.json.tmp.12345", dir);
    touch(path, "{");
    snprintf(path, sizeof path, "%s/block-7.h5", dir); /* not our name pattern */
    touch(path, "x");
    qd_stage_close(s);

    s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 1, &s), QD_OK);
    if (!s) return;
    int64_t *list = NULL;
    size_t n = 0;
    QD_EXPECT_EQ_INT(qd_stage_list(s, &list, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 3);
    for (size_t i = 0; i < n && i < 3; i++) QD_EXPECT_EQ_INT(list[i], staged[i]);
    free(list);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 3), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 4), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 1), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 105), 1);
    /* resume removed the interrupted writes */
    snprintf(path, sizeof path, "%s/block-00003.h5.tmp", dir);
    QD_EXPECT(!qd_path_exists(path));
    snprintf(path, sizeof path, "%s/fingerprint.json.tmp.12345", dir);
    QD_EXPECT(!qd_path_exists(path));
    /* a .tmp appearing later (another rank mid-write) is not counted either */
    snprintf(path, sizeof path, "%s/block-00009.h5.tmp", dir);
    touch(path, "partial");
    QD_EXPECT_EQ_INT(qd_stage_list(s, &list, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 3);
    free(list);
    /* the block that was interrupted is computed again and staged */
    qd_staged_block again = make_block(3);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &again), QD_OK);
    free_block(&again);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 3), 1);
    qd_staged_block *r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    qd_staged_block_free(r);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

static void test_corrupt(void) {
    char dir[300], path[400], copy[400];
    subdir(dir, sizeof dir, "corrupt");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(7);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    free_block(&b);
    snprintf(path, sizeof path, "%s/block-00007.h5", dir);
    qd_staged_block *r = NULL;

    /* truncated */
    snprintf(copy, sizeof copy, "%s/block-00008.h5", dir);
    qd_copy_file(path, copy);
    struct stat st;
    stat(copy, &st);
    QD_EXPECT_EQ_INT(truncate(copy, st.st_size / 2), 0);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 8, &r), QD_ERR_FORMAT);
    QD_EXPECT(r == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "block-00008.h5");

    /* not HDF5 at all */
    snprintf(copy, sizeof copy, "%s/block-00009.h5", dir);
    touch(copy, "this is not an HDF5 file, just some text that is long enough to look like one maybe");
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 9, &r), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "block-00009.h5: not a readable HDF5 file");
    snprintf(copy, sizeof copy, "%s/block-00010.h5", dir);
    touch(copy, "");
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 10, &r), QD_ERR_FORMAT);

    /* a dataset missing, a wrong shape, an attribute missing, a code out of range */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct {
        int n;
        const char *expect;
    } cases[] = {{11, "/modules/mlp.down_proj/scales: dataset missing"},
                 {12, "/modules/self_attn.q_proj/g_idx: shape [3], expected [16]"},
                 {13, "/modules/mlp.gate_proj attribute 'bits': missing"},
                 {14, "/modules/self_attn.q_proj/codes[0,0] = 200, expected < 2^4"},
                 {15, "/tensors: group missing"},
                 {16, "'block' is 7, expected 16"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(copy, sizeof copy, "%s/block-%05d.h5", dir, cases[c].n);
        qd_copy_file(path, copy);
        hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
        QD_EXPECT(f >= 0);
        if (cases[c].n == 11) H5Ldelete(f, "/modules/mlp.down_proj/scales", H5P_DEFAULT);
        if (cases[c].n == 12) {
            H5Ldelete(f, "/modules/self_attn.q_proj/g_idx", H5P_DEFAULT);
            hsize_t d = 3;
            hid_t sp = H5Screate_simple(1, &d, NULL);
            hid_t ds = H5Dcreate2(f, "/modules/self_attn.q_proj/g_idx", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT);
            int32_t v[3] = {0, 0, 0};
            H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            H5Dclose(ds);
            H5Sclose(sp);
        }
        if (cases[c].n == 13) H5Adelete_by_name(f, "/modules/mlp.gate_proj", "bits", H5P_DEFAULT);
        if (cases[c].n == 14) {
            hid_t ds = H5Dopen2(f, "/modules/self_attn.q_proj/codes", H5P_DEFAULT);
            uint8_t codes[6 * 16] = {200};
            H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, codes);
            H5Dclose(ds);
        }
        if (cases[c].n == 15) H5Ldelete(f, "/tensors", H5P_DEFAULT);
        H5Fclose(f);
        r = NULL;
        QD_EXPECT_EQ_INT(qd_stage_read_block(s, cases[c].n, &r), QD_ERR_FORMAT);
        QD_EXPECT(r == NULL);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), copy);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), cases[c].expect);
    }
    /* the original is intact */
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 7, &r), QD_OK);
    qd_staged_block_free(r);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 99, &r), QD_ERR_IO);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "not found");
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

/* Damage anywhere in a staged file (one byte changed, every 17th position): the read either fails with
 * one line naming the file, or returns exactly what was written (the byte was padding); never another
 * value (metadata and every dataset carry checksums), never a crash, no HDF5 id left open. */
static void test_damage_sweep(void) {
    char dir[300], path[400], bad[400];
    subdir(dir, sizeof dir, "damage");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(1);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    snprintf(path, sizeof path, "%s/block-00001.h5", dir);
    snprintf(bad, sizeof bad, "%s/damaged.h5", dir);
    char *orig = NULL;
    size_t len = 0;
    QD_EXPECT_EQ_INT(qd_read_file(path, 1 << 24, &orig, &len), QD_OK);
    int refused = 0, same = 0, wrong = 0, leaked = 0;
    for (size_t pos = 0; orig && pos < len; pos += 17) {
        orig[pos] ^= 0x5a;
        FILE *f = fopen(bad, "wb"); /* no fsync: this copy need not be durable */
        if (f) {
            fwrite(orig, 1, len, f);
            fclose(f);
        }
        orig[pos] ^= 0x5a;
        qd_staged_block *r = NULL;
        qd_status st = qd_stage_read_block_file(bad, &r);
        if (st != QD_OK) {
            refused++;
            if (!strstr(qd_last_error(), "damaged.h5")) wrong++;
        } else if (same_block(&b, r)) {
            same++;
        } else {
            wrong++;
            fprintf(stderr, "byte %zu changed: read succeeded with different content\n", pos);
        }
        qd_staged_block_free(r);
        if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) leaked++;
    }
    fprintf(stderr, "damage sweep: %zu bytes, %d positions refused, %d read back unchanged\n", len, refused, same);
    QD_EXPECT(refused > 0);
    QD_EXPECT_EQ_INT(wrong, 0);
    QD_EXPECT_EQ_INT(leaked, 0);
    free(orig);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

int main(void) {
    if (h5t_begin("h5stage-damage") != 0) return 1;
    QD_RUN(test_resume_and_leftovers);
    QD_RUN(test_corrupt);
    QD_RUN(test_damage_sweep);
    h5t_end();
    return QD_TEST_END();
}
