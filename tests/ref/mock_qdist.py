#!/usr/bin/env python3
"""Stand-in for the qdist binary (quant-layer and quantize --format fake only), made of the Python
reference itself running in FLOAT32: QDIST_BIN=tests/ref/mock_qdist.py pytest tests/py/test_ref_*.py
checks the comparison plumbing before the C entry points exist, and shows what float32 arithmetic
alone costs against the float64 reference (the distance qdist's fp32 engine should be at). It
reverses the calibration rows, as qdist's concat mode may reorder them.
"""
import sys, os, json, argparse, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qref, qforward as qf, qref_model as qm
a = sys.argv[1:]
if not a: sys.exit(2)
cmd = a[0]
if '--help' in a:
    print('--calib-mode --format'); sys.exit(0)
ap = argparse.ArgumentParser()
for o in ['--input','--output','--method','--model','--calib','--calib-mode','--format']: ap.add_argument(o)
for o in ['--bits','--group-size','--nsamples','--seqlen']: ap.add_argument(o, type=int)
ap.add_argument('--damp', type=float, default=0.01)
for o in ['--sym','--asym','--act-order','--static-groups','--mse']: ap.add_argument(o, action='store_true')
o = ap.parse_args(a[1:])
f32 = np.float32
if cmd == 'quant-layer':
    t = qf.read_safetensors(o.input)
    W, X = t['weight'], t['inputs']
    if o.method == 'rtn':
        r = qref.rtn(W, o.bits, o.group_size, not o.asym, o.mse, f32)
    else:
        r = qref.gptq(W, qref.hessian(X, f32), o.bits, o.group_size, not o.asym, o.act_order, o.static_groups, o.damp, o.mse, dtype=f32, perchannel_after_dead=True)
    out = dict(codes=r['codes'].astype(np.int32), scales=r['scales'].astype(f32), zeros=r['zeros'].astype(np.int32), g_idx=r['g_idx'].astype(np.int32), dequant=r['dequant'].astype(f32), loss=np.array([r['loss']], f32))
    if r['damp'] is not None: out['damp'] = np.array([r['damp']], f32)
    qf.write_safetensors(o.output, out)
elif cmd == 'quantize':
    ids = qm.read_ids_jsonl(o.calib)[::-1]   # shuffled order
    calib = qm.calib_windows(ids, o.nsamples, o.seqlen)
    r = qm.quantize_model(o.model, calib, o.method, o.bits, o.group_size, not o.asym, o.act_order, dtype=f32, chain_f16_scales=True)
    os.makedirs(o.output, exist_ok=True)
    qm.write_fake_model(o.model, o.output, r)
    t = qf.read_safetensors(os.path.join(o.output, 'model.safetensors'))
    for n, L in r['layers'].items():
        t[n + '.qd_codes'] = L['codes'].astype(np.uint8); t[n + '.qd_scales'] = L['scales'].astype(f32)
        t[n + '.qd_zeros'] = L['zeros'].astype(np.int32); t[n + '.qd_g_idx'] = L['g_idx'].astype(np.int32)
    qf.write_safetensors(os.path.join(o.output, 'model.safetensors'), t)
    json.dump({'modules': {n: {'loss': L['loss']} for n, L in r['layers'].items()}}, open(os.path.join(o.output, 'qdist_report.json'), 'w'))
