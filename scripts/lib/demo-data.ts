/**
 * Deterministic, realistic identity objects (SCIM-like users and groups, ~900 bytes a
 * user) for the demo and the benchmarks. The same seed gives the same objects.
 */
const GIVEN = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Radia', 'Linus', 'Frances', 'John', 'Hedy', 'Tim', 'Katherine', 'Dennis', 'Sophie', 'Guido', 'Anita', 'Bjarne', 'Zoë', 'José', 'Łukasz', 'Chloé', 'Søren', 'Mei', 'Hiroshi', 'Aarav', 'Fatima', 'Olusegun']
const FAMILY = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson', 'Perlman', 'Torvalds', 'Allen', 'McCarthy', 'Lamarr', 'Berners-Lee', 'Johnson', 'Ritchie', 'Wilson', 'van Rossum', 'Borg', 'Stroustrup', 'Müller', 'García', 'Nowak', 'Dubois', 'Kierkegaard', 'Chen', 'Tanaka', 'Sharma', 'Haddad', 'Adeyemi']
const DEPARTMENTS = ['Engineering', 'Sales', 'Finance', 'Legal', 'Support', 'Marketing', 'Operations', 'Research', 'People', 'Security']
const TITLES = ['Engineer', 'Senior Engineer', 'Manager', 'Director', 'Analyst', 'Specialist', 'Consultant', 'Associate', 'Lead', 'Coordinator']
const CITIES = [['Berlin', 'DE'], ['Paris', 'FR'], ['London', 'GB'], ['New York', 'US'], ['Tokyo', 'JP'], ['São Paulo', 'BR'], ['Lagos', 'NG'], ['Mumbai', 'IN'], ['Sydney', 'AU'], ['Toronto', 'CA']]

/** A small seeded PRNG (mulberry32): fast and reproducible. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function hex (rand: () => number, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += Math.floor(rand() * 16).toString(16)
  return s
}

/** A random-looking UUID (v4 layout) from the PRNG, so ids arrive in random key order. */
function uuid (rand: () => number): string {
  return `${hex(rand, 8)}-${hex(rand, 4)}-4${hex(rand, 3)}-${'89ab'[Math.floor(rand() * 4)]}${hex(rand, 3)}-${hex(rand, 12)}`
}

function pick<T> (rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)]
}

/** One SCIM-like user object. */
export function makeUser (rand: () => number, n: number): Record<string, unknown> {
  const given = pick(rand, GIVEN)
  const family = pick(rand, FAMILY)
  const login = `${given}.${family}.${n}`.toLowerCase().normalize('NFD').replace(/[^a-z0-9.]/g, '')
  const [city, country] = pick(rand, CITIES)
  const created = Date.UTC(2015, 0, 1) + Math.floor(rand() * 3e11)
  return {
    id: uuid(rand),
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'],
    externalId: `emp-${100000 + n}`,
    userName: `${login}@example.com`,
    name: { formatted: `${given} ${family}`, givenName: given, familyName: family },
    displayName: `${given} ${family}`,
    title: pick(rand, TITLES),
    active: rand() > 0.08,
    emails: [{ value: `${login}@example.com`, type: 'work', primary: true }],
    phoneNumbers: [{ value: `+1-555-${String(Math.floor(rand() * 1e7)).padStart(7, '0')}`, type: 'work' }],
    addresses: [{ locality: city, country, type: 'work', primary: true }],
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': {
      employeeNumber: String(100000 + n),
      department: pick(rand, DEPARTMENTS),
      costCenter: `CC-${Math.floor(rand() * 900) + 100}`,
      manager: { value: uuid(rand) },
    },
    meta: {
      resourceType: 'User',
      created: new Date(created).toISOString(),
      lastModified: new Date(created + Math.floor(rand() * 3e10)).toISOString(),
      version: `W/"${hex(rand, 12)}"`,
    },
  }
}

/** One SCIM-like group with a few member references. */
export function makeGroup (rand: () => number, n: number): Record<string, unknown> {
  const members = Array.from({ length: 3 + Math.floor(rand() * 5) }, () => ({ value: uuid(rand), type: 'User' }))
  return {
    id: uuid(rand),
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: `${pick(rand, DEPARTMENTS)} team ${n}`,
    members,
    meta: { resourceType: 'Group', created: new Date(Date.UTC(2020, 0, 1) + n * 3600_000).toISOString() },
  }
}

/** One stored object: its id and its JSON bytes, as upsertObjects takes them. */
export interface ObjectRow { id: string, doc: Buffer }

/**
 * `count` objects made by `make` from the PRNG seeded with `seed`, in batches of `size`
 * rows ready for upsertObjects (one transaction each).
 */
export function * objectBatches (make: (rand: () => number, n: number) => Record<string, unknown>, seed: number, count: number, size = 10_000): Generator<ObjectRow[]> {
  const rand = prng(seed)
  for (let n = 0; n < count; n += size) {
    const rows: ObjectRow[] = []
    for (let i = n; i < Math.min(count, n + size); i++) {
      const obj = make(rand, i)
      rows.push({ id: obj.id as string, doc: Buffer.from(JSON.stringify(obj)) })
    }
    yield rows
  }
}
