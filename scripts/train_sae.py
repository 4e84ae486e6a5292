"""Train the embedded default SAE: a TopK SAE on a middle residual layer of SmolLM2-135M-Instruct.

    python scripts/train_sae.py --tokens 1000000 --out data/sae-smollm2-layer14

Activations are read with the same model loading, packing and position filtering as ``collect``
(the first position of each sequence and special tokens are left out), held in memory (float32,
~2.3 GB per million tokens), and the last ``--eval-fraction`` of sequences is held out to measure the
fraction of variance unexplained (FVU). The recipe follows EleutherAI's sparsify: decoder initialised
as the encoder's transpose with unit-norm rows, b_dec at the mean, Adam with lr scaled by
1/sqrt(latents / 2^14), and the AuxK loss (k_aux = d_in / 2, coefficient 1/32) on latents that have not
fired for ``--dead-after`` tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

from autointerp.corpus import SequencePacker, open_corpus, texts_of
from autointerp.models.dictionaries import LinearDictionary
from autointerp.models.dictionaries.reconstruction import fraction_of_variance_unexplained
from autointerp.models.dictionaries.saelens import save_saelens
from autointerp.models.embedded import DEFAULT_HOOKPOINT
from autointerp.models.subject import load_subject_model


def read_activations(args) -> tuple[torch.Tensor, torch.Tensor]:
    subject = load_subject_model("embedded", args.hookpoint)
    packer = SequencePacker(subject.tokenizer, args.seq_len)
    special = torch.tensor(subject.special_token_ids())
    n_seqs = math.ceil(args.tokens / args.seq_len)
    seqs = []
    for seq in packer.sequences(texts_of(open_corpus("embedded"), "text")):
        seqs.append(seq)
        if len(seqs) == n_seqs:
            break
    if len(seqs) < n_seqs:
        sys.exit(f"the embedded corpus has only {len(seqs) * args.seq_len} tokens; pass --tokens lower")
    n_eval = max(1, int(len(seqs) * args.eval_fraction))
    start = time.time()

    def read(part: list[np.ndarray]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(part), args.batch_size):
            ids = torch.from_numpy(np.stack(part[i : i + args.batch_size]))
            hidden = subject.read(ids).float()
            keep = ~torch.isin(ids, special)
            keep[:, 0] = False
            chunks.append(hidden[keep].cpu())
            if len(chunks) % 25 == 0:
                print(
                    f"activations: {sum(c.shape[0] for c in chunks)} tokens, "
                    f"{(i + ids.shape[0]) * args.seq_len / (time.time() - start):.0f} tok/s",
                    flush=True,
                )
        return torch.cat(chunks)

    return read(seqs[:-n_eval]), read(seqs[-n_eval:])


def train(x: torch.Tensor, args) -> LinearDictionary:
    torch.manual_seed(args.seed)
    d_in = x.shape[1]
    d_sae = args.latents
    w_dec = torch.randn(d_sae, d_in)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    W_enc = torch.nn.Parameter(w_dec.T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    W_dec = torch.nn.Parameter(w_dec.clone())
    b_dec = torch.nn.Parameter(x[:100_000].mean(0).clone())
    params = [W_enc, b_enc, W_dec, b_dec]
    lr = args.lr or 2e-4 / math.sqrt(d_sae / 2**14)
    opt = torch.optim.Adam(params, lr=lr, eps=6.25e-10)
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    variance = (x[:100_000] - x[:100_000].mean(0)).pow(2).sum(1).mean()
    k_aux = d_in // 2
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0] - args.train_batch + 1, args.train_batch):
            batch = x[order[i : i + args.train_batch]]
            pre = (batch - b_dec) @ W_enc + b_enc
            top = pre.topk(args.k, dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
            recon = acts @ W_dec + b_dec
            err = batch - recon
            loss = err.pow(2).sum(1).mean() / variance
            fired = torch.zeros(d_sae, dtype=torch.bool)
            fired[top.indices.flatten()] = True
            since_fired += batch.shape[0]
            since_fired[fired] = 0
            dead = since_fired > args.dead_after
            n_dead = int(dead.sum())
            if n_dead:
                masked = torch.where(dead, pre, torch.tensor(-torch.inf))
                aux_top = masked.topk(min(k_aux, n_dead), dim=-1)
                aux_acts = torch.zeros_like(pre).scatter(-1, aux_top.indices, torch.relu(aux_top.values))
                aux_recon = aux_acts @ W_dec
                aux = (err.detach() - aux_recon).pow(2).sum(1).mean() / err.detach().pow(2).sum(1).mean()
                loss = loss + aux / 32 * min(n_dead / k_aux, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # keep decoder rows at unit norm: remove the radial gradient
                W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
            opt.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=1, keepdim=True)
            step += 1
            if step % 50 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f} dead {n_dead}", flush=True)
    return LinearDictionary(
        W_enc=W_enc.detach(),
        b_enc=b_enc.detach(),
        W_dec=W_dec.detach(),
        b_dec=b_dec.detach(),
        activation="topk",
        k=args.k,
        input_bias=b_dec.detach(),  # SAELens' apply_b_dec_to_input
        hookpoint=args.hookpoint,
        format="SAELens",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1_000_000, help="corpus tokens read (train + eval)")
    p.add_argument("--hookpoint", default=DEFAULT_HOOKPOINT)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--latents", type=int, default=2304)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-batch", type=int, default=4096, help="tokens per optimiser step")
    p.add_argument("--lr", type=float, default=0.0, help="0: 2e-4 / sqrt(latents / 2^14)")
    p.add_argument("--dead-after", type=int, default=500_000, help="tokens without firing to count as dead")
    p.add_argument("--eval-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/sae-smollm2-layer14")
    args = p.parse_args()
    torch.set_grad_enabled(True)
    train_x, eval_x = read_activations(args)
    print(f"train tokens {train_x.shape[0]}, eval tokens {eval_x.shape[0]}", flush=True)
    start = time.time()
    sae = train(train_x, args)
    with torch.no_grad():
        eval_latents = sae.encode(eval_x)
        fvu = fraction_of_variance_unexplained(eval_x, sae.decode(eval_latents))
        train_fvu = fraction_of_variance_unexplained(train_x[:50_000], sae.decode(sae.encode(train_x[:50_000])))
        fired = (eval_latents > 0).any(0).float().mean().item()
    report = {
        "train_tokens": int(train_x.shape[0]),
        "eval_tokens": int(eval_x.shape[0]),
        "eval_fvu": round(fvu, 4),
        "train_fvu": round(train_fvu, 4),
        "latents_firing_on_eval": round(fired, 4),
        "train_seconds": round(time.time() - start, 1),
        "command": "python scripts/train_sae.py " + " ".join(sys.argv[1:]),
    }
    save_saelens(sae, args.out, {"model_name": "SmolLM2-135M-Instruct", "training": report})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
