#!/usr/bin/env node
// Converts HL7's official FHIRPath R4 test suite into the JSON fixture that
// shared/fhirlake-fhir/tests/fhirpath_conformance.rs runs.
//
//   git clone --depth 1 https://github.com/FHIR/fhir-test-cases /tmp/fhir-test-cases
//   node shared/fhirlake-fhir/generator/fhirpath-tests.mjs /tmp/fhir-test-cases
//
// Writes shared/fhirlake-fhir/tests/fhirpath-r4/cases.json and copies the JSON
// form of every input resource the suite names next to it. The suite is
// r4/fhirpath/tests-fhir-r4.xml; its inputs are XML, so the JSON form of the
// same example (CC0 spec data) is taken from the checkout: r4/examples/ or r4/
// first, else r5/examples/ for the three whose R4 XML is identical to the R5
// one (valueset-example-expansion, parameters-example-types,
// patient-example-period). No dependencies beyond Node itself.

import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = join(HERE, '..', 'tests', 'fhirpath-r4');
const SRC = process.argv[2];
if (!SRC) {
  console.error('usage: node fhirpath-tests.mjs <fhir-test-cases checkout>');
  process.exit(2);
}

const xml = readFileSync(join(SRC, 'r4', 'fhirpath', 'tests-fhir-r4.xml'), 'utf8').replace(/<!--[\s\S]*?-->/g, '');

function attrs(text) {
  const out = {};
  for (const m of text.matchAll(/([A-Za-z]+)="([^"]*)"/g)) out[m[1]] = decode(m[2]);
  return out;
}

function decode(s) {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-fA-F]+);/g, (_, n) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&amp;/g, '&');
}

const cases = [];
const inputs = new Set();
for (const g of xml.matchAll(/<group\b([^>]*)>([\s\S]*?)<\/group>/g)) {
  const group = attrs(g[1]).name;
  for (const t of g[2].matchAll(/<test\b([^>]*?)(?:\/>|>([\s\S]*?)<\/test>)/g)) {
    const ta = attrs(t[1]);
    const body = t[2] ?? '';
    const em = body.match(/<expression\b([^>]*)>([\s\S]*?)<\/expression>/);
    if (!em) throw new Error(`test ${ta.name} has no expression`);
    const ea = attrs(em[1]);
    const outputs = [...body.matchAll(/<output\b([^>]*?)(?:\/>|>([\s\S]*?)<\/output>)/g)].map((o) => ({
      type: attrs(o[1]).type ?? null,
      value: decode(o[2] ?? ''),
    }));
    const input = ta.inputfile ? ta.inputfile.replace(/\.xml$/, '.json') : null;
    if (input) inputs.add(input);
    cases.push({
      group,
      name: ta.name,
      expression: decode(em[2]),
      input,
      outputs,
      invalid: ea.invalid ?? null,
      predicate: ta.predicate === 'true',
      mode: ta.mode ?? ea.mode ?? null,
      ordered: ta.ordered !== 'false',
      version: ta.version ?? null,
    });
  }
}

// Where the suite's XML input differs from the published JSON example, the difference, applied to the JSON.
const PATCHES = {
  // r4/observation-example.xml carries a patient-age extension that r4/examples/observation-example.json lacks.
  'observation-example.json': (r) => {
    const out = {};
    for (const [k, v] of Object.entries(r)) {
      out[k] = v;
      if (k === 'text') {
        out.extension = [
          {
            url: 'http://example.com/fhir/StructureDefinition/patient-age',
            valueAge: { value: 41, system: 'http://unitsofmeasure.org', code: 'a' },
          },
        ];
      }
    }
    return out;
  },
};

const SEARCH = [join('r4', 'examples'), 'r4', join('r5', 'examples')];
mkdirSync(OUT, { recursive: true });
for (const file of [...inputs].sort()) {
  const dir = SEARCH.find((d) => existsSync(join(SRC, d, file)));
  if (!dir) throw new Error(`no JSON form of ${file}`);
  // Copied byte for byte: re-serialising would turn decimals such as 1.0 into integers.
  let text = readFileSync(join(SRC, dir, file), 'utf8');
  const resource = JSON.parse(text);
  const patch = PATCHES[file];
  if (patch) {
    if (/\d\.\d*0\b/.test(text)) throw new Error(`${file}: re-serialising would lose decimal precision`);
    text = JSON.stringify(patch(resource), null, 2) + '\n';
  }
  writeFileSync(join(OUT, file), text);
}
writeFileSync(join(OUT, 'cases.json'), JSON.stringify(cases, null, 1) + '\n');
console.log(`${cases.length} cases, ${inputs.size} input files`);
