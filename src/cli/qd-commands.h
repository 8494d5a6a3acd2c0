/* SPDX-License-Identifier: MIT
 * qd-commands.h - the subcommands of the qdist CLI. Each takes the arguments after its name and
 * returns a qd_status; main() alone turns it into the exit code (0 ok, 1 runtime failure, 2 usage).
 * To add one: write src/cli/cmd-<name>.c defining qd_cmd_<name> and add a line to QD_COMMANDS
 * (an '_' in the name is typed as '-' on the command line: quant_layer is `qdist quant-layer`).
 */
#ifndef QD_COMMANDS_H
#define QD_COMMANDS_H

#include "qd-status.h"

#define QD_COMMANDS(XX)                                                            \
    XX(inspect, "show a model's architecture, blocks, tensors and quantization")   \
    XX(quantize, "quantize a model with RTN, GPTQ or AWQ and export it")           \
    XX(export, "write a fake-quant run as a GPTQ, AWQ or compressed-tensors checkpoint") \
    XX(eval, "perplexity of a model (original or quantized) on a text file")       \
    XX(tokenize, "encode JSONL text with the model's tokenizer.json (or decode)")  \
    XX(quant_layer, "quantize one Linear from a safetensors file (reference tests)")

#define QD_CMD_DECL(name, summary) qd_status qd_cmd_##name(int argc, char **argv);
QD_COMMANDS(QD_CMD_DECL)
#undef QD_CMD_DECL

#endif
