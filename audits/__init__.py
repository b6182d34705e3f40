"""Privacy audits (on the roadmap; nothing here yet).

This package will test privacy claims empirically: run a mechanism (an LDP protocol or a training run) on
chosen neighbouring inputs, attack its outputs, and turn the attack's success counts into a statistically
sound lower bound (or an estimate) of epsilon to compare with what the accountants report.
"""
