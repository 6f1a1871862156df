import type { GradientCells } from '../autodiff/plan.ts';
import { label } from '../graph/graph.ts';
import type { Plan } from '../partition/plan.ts';
import type { WaitingEntry } from './host-types.ts';
import type { NodeActor } from './node-actor.ts';
import type { ParamActor } from './param-actor.ts';

/**
 * What a host's actors are still waiting for in the current step (for timeout errors): per live
 * microbatch of each actor its inputs, its turn in the schedule or its gradients (Note [gradient
 * cells]), and per parameter the replicas' microbatches whose gradients have not all arrived.
 */
export function waitingEntries<T>(
  plan: Plan,
  cells: GradientCells,
  actors: readonly NodeActor<T>[],
  params: Iterable<ParamActor<T>>,
): WaitingEntry[] {
  const out: WaitingEntry[] = [];
  const graph = plan.graph;
  const { slotBase, cell } = cells;
  for (const actor of actors) {
    for (let mb = 0; mb < actor.microbatches.length; mb++) {
      const s = actor.microbatches[mb];
      const name = label(actor.node);
      if (s === undefined) {
        // Nothing of this microbatch arrived yet (a finished one has run).
        if (actor.hasRun(mb)) continue;
        const ins = actor.node.inputs;
        const missingParams = ins.filter((_, i) => actor.slots[i] === 'param' && !actor.hasParam(i));
        const fixedOnly = actor.fixedOnly;
        const from = (fixedOnly ? missingParams : ins.filter((_, i) => actor.slots[i] === 'microbatch')).map(
          (i) => label(graph.nodeAt(i)),
        );
        out.push({
          node: name,
          replica: actor.replica,
          mb,
          waitingFor: !fixedOnly && ins.length === 0 ? 'its feed' : fixedOnly ? 'parameters' : 'inputs',
          have: fixedOnly ? ins.length - missingParams.length : 0,
          need: fixedOnly ? ins.length : ins.length === 0 ? 1 : actor.mbSlots,
          from,
        });
        continue;
      }
      if (!s.fired) {
        const from = actor.node.inputs
          .filter((_, i) => actor.slots[i] === 'microbatch' && s.inputs[i] === undefined)
          .map((i) => label(graph.nodeAt(i)));
        out.push({
          node: name,
          replica: actor.replica,
          mb,
          waitingFor: 'inputs',
          have: actor.mbSlots - s.missing,
          need: actor.mbSlots,
          from,
        });
      } else if (s.g !== null) {
        out.push({
          node: name,
          replica: actor.replica,
          mb,
          waitingFor: 'schedule',
          have: 0,
          need: 1,
          from: [],
        });
      } else if (actor.hasBackward) {
        const from = plan.consumers[actor.node.id]!.filter(([c, slot]) => {
          const k = cell[slotBase[c]! + slot]!;
          return k >= 0 && s.cells[k] === undefined;
        }).map(([c]) => label(graph.nodeAt(c)));
        out.push({
          node: name,
          replica: actor.replica,
          mb,
          waitingFor: 'gradients',
          have: s.received,
          need: actor.expected,
          from,
        });
      }
    }
  }
  for (const p of params) {
    for (const m of p.missing()) {
      out.push({
        node: label(graph.nodeAt(p.node)),
        replica: m.replica,
        mb: m.mb,
        waitingFor: 'parameter gradients',
        have: m.have,
        need: m.need,
        from: [],
      });
    }
  }
  return out;
}
