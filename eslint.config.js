import neostandard from 'neostandard'

/** Names of values that hold secrets: compared only with timingSafeEqual (src/services/admin.ts secretsEqual). */
const SECRET = '/^(sig|signature|mac|secret|token|adminToken|admin|given|expected)$/i'
const secretOperand = (side, other) => {
  // Checking whether a secret is there at all is not a comparison of its value.
  const presence = `:not([${other}.name='undefined']):not([${other}.type='Literal'][${other}.raw='null'])`
  return [
    `BinaryExpression[operator=/^[!=]==?$/][${side}.type='Identifier'][${side}.name=${SECRET}]${presence}`,
    `BinaryExpression[operator=/^[!=]==?$/][${side}.type='MemberExpression'][${side}.property.name=${SECRET}]${presence}`,
  ]
}

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'data/**', '.scratch/**'] }),
  {
    rules: {
      // A fire-and-forget promise is written `void promise` and handles its own errors.
      'no-void': ['error', { allowAsStatement: true }],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error',
        ...[...secretOperand('left', 'right'), ...secretOperand('right', 'left')].map((selector) => ({
          selector,
          message: 'Compare secrets, signatures and MACs in constant time (timingSafeEqual or secretsEqual), never with == or ===.',
        })),
      ],
    },
  },
  {
    // TypeBox's idiom: a schema and its static type share one name.
    files: ['src/contract/generated.ts'],
    rules: { '@typescript-eslint/no-redeclare': 'off' },
  },
]
