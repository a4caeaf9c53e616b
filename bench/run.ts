/** `npm run bench` / `node --import tsx bench/run.ts`: runs every benchmark and prints its lines. */
import { benchSframe } from './sframe.ts';
import { benchKeys } from './keys.ts';

const benches: Array<[string, () => Promise<string[]>]> = [
  ['sframe', benchSframe],
  ['keys', benchKeys],
  ['capacity', async () => (await import('./capacity.ts')).benchCapacity()],
];

for (const [name, run] of benches) {
  console.log(`== ${name}`);
  for (const line of await run()) console.log(line);
}
